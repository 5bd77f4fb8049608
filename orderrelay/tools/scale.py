"""``orderrelay bench --scale N``: every scheduled and per-call query against N orders, with their plans.

A database of its own is made on the configured PostgreSQL (or an embedded one), migrated, and seeded in SQL
with N orders in the proportions of a deployment that has run a while (80 % placed, 10 % failed, 2 % in doubt,
waiting, rejected, canceled and open orders, Adobe orders still pending), about 1.35 attempts, 3 events and one
notification per order. Each query then runs twice under EXPLAIN ANALYZE (the statements that change rows in a
transaction rolled back), and the second run's time and plan are reported: the table names any sequential scan
of a large table. The database is dropped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.table import Table

from orderrelay.providers import IDS as PROVIDER_IDS
from orderrelay.store import queries
from orderrelay.store.db import migrate

console = Console(stderr=True)
LARGE = ("orders", "attempts", "order_events", "notifications")
PRODUCERS = 10

# A seeded deployment: statuses by i % 100, providers by i % 5, card data on Chaiz orders of the last 30 days.
SEED_ORDERS = """
INSERT INTO orders (id, provider_key, provider, status, provider_status, provider_ref, request, request_hash,
                    idempotency_key, producer, due_at, expected_at, created_at, updated_at, placed_at, last_error,
                    attempt_count, retry_round, sealed_card, lease_until)
SELECT gen_random_uuid(), gen_random_uuid(), p.provider, s.status,
       CASE WHEN p.provider = 'adobe_vip' AND s.status = 'placed' THEN CASE WHEN i %% 20 = 0 THEN '1002' ELSE '1000' END
       END,
       CASE WHEN s.status = 'placed' THEN 'ref-' || i END,
       CASE WHEN p.provider = 'chaiz' AND i > %(n)s * 0.9
            THEN '{"payment": {"accountNumber": {"$sealed": "x", "last4": "1111"}, "cvc": {"$sealed": "y"}}}'::jsonb
            ELSE '{"a": 1}'::jsonb END,
       'h', 'scale-' || i, 'producer-' || (i %% %(producers)s),
       CASE WHEN s.status = 'waiting' THEN now() + make_interval(secs => i %% 86400) ELSE now() END,
       NULL, now() - make_interval(secs => (%(n)s - i) * 2), now() - make_interval(secs => (%(n)s - i) * 2),
       CASE WHEN s.status = 'placed' THEN now() - make_interval(secs => (%(n)s - i) * 2) END,
       CASE WHEN s.status IN ('failed', 'in_doubt') THEN jsonb_build_object('kind',
            CASE WHEN s.status = 'in_doubt' THEN 'in_doubt' WHEN i %% 2 = 0 THEN 'retryable' ELSE 'permanent' END) END,
       1, CASE WHEN s.status = 'failed' THEN 3 ELSE 0 END,
       p.provider = 'chaiz' AND i > %(n)s * 0.9,
       CASE WHEN s.status = 'placing' THEN now() + interval '1 minute' END
FROM generate_series(1, %(n)s) AS i,
     LATERAL (SELECT (ARRAY['extend', 'chaiz', 'adobe_vip', 'battleface', 'webroot'])[1 + i %% 5] AS provider) AS p,
     LATERAL (SELECT CASE WHEN i %% 100 < 80 THEN 'placed' WHEN i %% 100 < 90 THEN 'failed'
                          WHEN i %% 100 < 92 THEN 'in_doubt' WHEN i %% 100 < 95 THEN 'waiting'
                          WHEN i %% 100 < 97 THEN 'rejected' WHEN i %% 100 < 98 THEN 'canceled'
                          WHEN i %% 100 < 99 THEN 'queued' ELSE 'placing' END AS status) AS s
"""
SEED_ATTEMPTS = """
INSERT INTO attempts (order_id, number, idempotency_key, started_at, finished_at, http_status, latency_ms, outcome)
SELECT o.id, k, o.provider_key::text, o.created_at, o.created_at, 200, 50 + (k * 37) % 400,
       CASE WHEN o.status = 'placing' THEN NULL WHEN o.status = 'placed' AND k = 1 THEN 'placed'
            WHEN o.status = 'in_doubt' THEN 'in_doubt' ELSE 'retryable' END
FROM orders o, generate_series(1, CASE WHEN o.status IN ('failed', 'in_doubt') THEN 4 ELSE 1 END) AS k
WHERE o.status NOT IN ('waiting', 'rejected', 'canceled', 'queued')
"""
SEED_EVENTS = """
INSERT INTO order_events (order_id, at, from_status, to_status, reason)
SELECT o.id, o.created_at, NULL, o.status, 'seeded ' || k FROM orders o, generate_series(1, 3) AS k
"""
SEED_NOTIFICATIONS = """
INSERT INTO notifications (event_id, order_id, target, body, deadline, status, next_attempt_at)
SELECT gen_random_uuid(), o.id, '{"url": "https://checkout.example/hooks"}'::jsonb, '{}'::jsonb,
       now() + interval '1 day', CASE WHEN row_number() OVER () % 500 = 0 THEN 'pending' ELSE 'delivered' END, now()
FROM orders o WHERE o.status NOT IN ('waiting', 'queued', 'placing')
"""
# The totals the triggers would have kept (the seed runs with triggers off, as a bulk load).
SEED_TOTALS = """
INSERT INTO order_totals SELECT coalesce(provider, ''), status, count(*) FROM orders GROUP BY 1, 2;
INSERT INTO attempt_totals
SELECT coalesce(o.provider, ''), a.outcome, orderrelay_latency_le(a.latency_ms), count(*),
       coalesce(sum(a.latency_ms), 0)
FROM attempts a JOIN orders o ON o.id = a.order_id WHERE a.outcome IS NOT NULL GROUP BY 1, 2, 3;
"""


@dataclass
class Measured:
    query: str
    used_by: str
    ms: float
    plan: str
    scans: list[str] = field(default_factory=list)  # sequential scans of large tables


@dataclass
class Report:
    orders: int
    rows: dict[str, int] = field(default_factory=dict)
    seed_seconds: float = 0.0
    queries: list[Measured] = field(default_factory=list)

    def scanned(self) -> list[str]:
        return [f"{m.query}: {', '.join(m.scans)}" for m in self.queries if m.scans]


def seed(conn: psycopg.Connection, n: int) -> dict[str, int]:
    """N orders with their attempts, events and notifications, then ANALYZE; returns each table's row count."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # a bulk load: triggers off, totals below
        conn.execute(SEED_ORDERS, {"n": n, "producers": PRODUCERS})
        for statement in (SEED_ATTEMPTS, SEED_EVENTS, SEED_NOTIFICATIONS):
            conn.execute(statement)
        conn.execute("DELETE FROM order_totals; DELETE FROM order_total_deltas")
        conn.execute("DELETE FROM attempt_totals; DELETE FROM attempt_total_deltas")
        conn.execute(SEED_TOTALS)
    for table in LARGE:
        conn.execute(f"ANALYZE {table}")
    return {t: conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"] for t in LARGE}  # noqa: S608


def cases(conn: psycopg.Connection) -> list[tuple[str, str, str, dict]]:
    """(name, used by, query, parameters) for every scheduled and per-call query, with values from the seed."""
    some = conn.execute("SELECT id, idempotency_key, producer FROM orders ORDER BY created_at DESC LIMIT 1").fetchone()
    zero = uuid.UUID(int=0)
    return [
        ("sweep: due orders", "beat, every 15 s", queries.SWEEP_DUE, {"grace": 60, "limit": 1000}),
        ("sweep: expired leases", "beat, every 15 s", queries.EXPIRED_LEASES, {"limit": 1000}),
        ("sweep: fold the totals", "beat, every 15 s", queries.FOLD_ORDER_TOTALS, {}),
        ("retry rounds", "beat, every minute", queries.REQUEUE_ROUNDS, {"rounds": 3, "interval": 1800, "limit": 500}),
        ("follow-ups (Adobe 1002)", "beat, every 5 min", queries.FOLLOW_UPS, {"limit": 20}),
        (
            "card data due for erasure",
            "beat, hourly",
            queries.CARD_DATA_DUE_FOR_ERASURE,
            {"retention": 2592000, "after": zero, "limit": 500},
        ),
        ("notifications due", "beat, every 5 s", queries.DUE_NOTIFICATIONS, {"resend_after": 60, "limit": 200}),
        ("status: order totals", "status, /metrics", queries.ORDER_TOTALS, {}),
        ("status: oldest open change", "status", queries.OLDEST_OPEN, {"providers": list(PROVIDER_IDS)}),
        ("status: latest failures", "status", queries.RECENT_FAILURES, {"limit": 10}),
        ("status: follow-up troubles", "status", queries.FOLLOW_UP_TROUBLES, {}),
        ("/metrics: attempt totals", "/metrics", queries.ATTEMPT_TOTALS, {}),
        ("/metrics: oldest due", "/metrics", queries.OLDEST_DUE, {}),
        ("order by id", "show, API GET /orders/{id}", queries.GET_ORDER, {"id": some["id"]}),
        (
            "order by key",
            "show --key, API replays",
            queries.GET_ORDER_BY_KEY,
            {"key": some["idempotency_key"], "all": False, "producer": some["producer"]},
        ),
        ("order's events", "show, API", queries.ORDER_EVENTS, {"id": some["id"]}),
        ("order's attempts", "show, API", queries.ORDER_ATTEMPTS, {"id": some["id"]}),
        (
            "a producer's latest orders",
            "API GET /orders",
            queries.LIST_ORDERS,
            {"status": None, "provider": None, "all": False, "producer": some["producer"], "limit": 50, "offset": 0},
        ),
        (
            "an operator's failed orders",
            "list --status failed",
            queries.LIST_ORDERS,
            {"status": "failed", "provider": None, "all": True, "producer": None, "limit": 50, "offset": 0},
        ),
    ]


def explain(conn: psycopg.Connection, query: str, params: dict | None = None) -> dict:
    """The plan the server would run ``query`` with (its top node, from EXPLAIN in JSON), without running it."""
    return conn.execute(f"EXPLAIN (FORMAT JSON) {query}", params).fetchone()["QUERY PLAN"][0]["Plan"]


def seq_scans(node: Any) -> list[str]:
    """The tables a plan (or any part of one) reads by a sequential scan."""
    if isinstance(node, list):
        return [t for item in node for t in seq_scans(item)]
    if not isinstance(node, dict):
        return []
    found = [node["Relation Name"]] if node.get("Node Type") == "Seq Scan" else []
    for value in node.values():
        found += seq_scans(value)
    return found


def shape(node: dict) -> str:
    """The plan in one line: each node's type and the index or table it reads."""
    name = node["Node Type"] + (f" {node['Index Name']}" if "Index Name" in node else "")
    if "Index Name" not in node and "Relation Name" in node:
        name += f" {node['Relation Name']}"
    children = [shape(c) for c in node.get("Plans", [])]
    return name + (f" ({', '.join(children)})" if children else "")


def measure(conn: psycopg.Connection) -> list[Measured]:
    """Each query twice under EXPLAIN ANALYZE, rolled back; the second run's execution time and plan."""
    measured = []
    for name, used_by, query, params in cases(conn):
        for _ in range(2):
            with contextlib.suppress(_Undo), conn.transaction():
                result = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", params).fetchone()
                raise _Undo
        plan = result["QUERY PLAN"][0]
        large = [t for t in seq_scans(plan["Plan"]) if t in LARGE]
        measured.append(Measured(name, used_by, round(plan["Execution Time"], 2), shape(plan["Plan"]), large))
    return measured


class _Undo(Exception):
    """Rolls back the transaction a measured statement ran in (it may have changed rows)."""


@contextlib.contextmanager
def _database(server_url: str | None) -> Iterator[str]:
    """A new database on the given server (or an embedded one), dropped afterwards."""
    from orderrelay.tools import embedded

    with contextlib.ExitStack() as stack:
        if not server_url:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orderrelay-")))
            server_url = stack.enter_context(embedded.postgres_server(workdir))
        name = f"orderrelay_scale_{uuid.uuid4().hex[:8]}"
        parts = urlsplit(server_url)
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(parts._replace(path=f"/{name}"))
        finally:
            with psycopg.connect(server_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(*, orders: int, out_dir: Path) -> int:
    report = Report(orders)
    with _database(os.environ.get("ORDERRELAY_DATABASE_URL")) as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            console.print(f"seeding {orders:,} orders with their attempts, events and notifications ...")
            started = time.monotonic()
            report.rows = seed(conn, orders)
            report.seed_seconds = round(time.monotonic() - started, 1)
            report.queries = measure(conn)
    _print(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"scale-{orders}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(asdict(report), indent=2))
    console.print(f"figures written to {path}")
    for line in report.scanned():
        console.print(f"[red]a sequential scan of a large table: {line}[/]")
    return 1 if report.scanned() else 0


def _print(report: Report) -> None:
    rows = ", ".join(f"{n:,} {t}" for t, n in report.rows.items())
    table = Table("query", "used by", "ms", "plan", title=f"{rows} (seeded in {report.seed_seconds} s)")
    for m in report.queries:
        table.add_row(m.query, m.used_by, f"{m.ms:.2f}", m.plan, style="red" if m.scans else None)
    Console().print(table)
