"""The totals behind /metrics and `status` (migration 0007) against a real PostgreSQL: they equal what a full
count of the rows says after every kind of change, with concurrent writers and folders, and reading them scans
neither orders nor attempts."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from orderrelay.api.metrics import PostgresCollector
from orderrelay.core import pipeline
from orderrelay.foundation.constants import Status
from orderrelay.sandbox.samples import extend_order
from orderrelay.store import orders as store
from tests.integration.test_store import insert

pytestmark = pytest.mark.integration


def counted(db) -> dict:
    """What a full count of the rows says: orders by provider and status, attempts by provider and outcome."""
    orders = {
        (r["provider"], r["status"]): r["n"]
        for r in db.execute("SELECT provider, status, count(*) AS n FROM orders GROUP BY 1, 2")
    }
    attempts = {
        (r["provider"], r["outcome"]): r["n"]
        for r in db.execute(
            "SELECT o.provider, a.outcome, count(*) AS n "
            "FROM attempts a JOIN orders o ON o.id = a.order_id WHERE a.outcome IS NOT NULL GROUP BY 1, 2"
        )
    }
    return {"orders": orders, "attempts": attempts}


def maintained(db) -> dict:
    orders = {(r["provider"], r["status"]): r["n"] for r in store.counts(db)}
    attempts: Counter = Counter()
    for row in store.attempt_totals(db)[1]:
        attempts[row["provider"], row["outcome"]] += row["n"]
    return {"orders": orders, "attempts": dict(attempts)}


def test_the_totals_equal_a_full_count_after_every_kind_of_change(runtime, db, sandbox):
    placed = [pipeline.intake(runtime, {"provider": "extend", "order": extend_order(f"tot-{i}")}) for i in range(3)]
    for step in placed[:2]:
        assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    pipeline.intake(runtime, {"provider": "nobody", "order": {}})  # rejected, no provider of ours
    pipeline.intake(runtime, {"provider": "extend", "order": {"x": 1}})  # rejected, extend's
    waiting = insert(db, status=Status.WAITING)
    db.execute("UPDATE orders SET status = 'canceled' WHERE id = %s", [waiting["id"]])
    db.execute("UPDATE orders SET provider = 'chaiz' WHERE id = %s", [placed[2].order_id])
    assert maintained(db) == counted(db)
    store.fold_totals(db)
    assert maintained(db) == counted(db)  # folded or not, the same sums
    db.execute("DELETE FROM orders WHERE id = %s", [placed[0].order_id])  # its attempts go with it
    assert maintained(db)["orders"] == counted(db)["orders"]
    db.execute("TRUNCATE orders CASCADE")
    assert maintained(db) == {"orders": {}, "attempts": {}}


def test_concurrent_writers_and_folders_keep_the_totals_exact(db, database_url):
    import psycopg
    from psycopg.rows import dict_row

    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
                for i in range(40):
                    row = insert(conn, message_id=f"w{n}-{i}")
                    for status in (Status.PLACING, Status.RETRYING, Status.PLACED if i % 3 else Status.FAILED):
                        conn.execute("UPDATE orders SET status = %s WHERE id = %s", [status, row["id"]])
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    def fold() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for _ in range(60):
                store.fold_totals(conn)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)] + [
        threading.Thread(target=fold) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert maintained(db) == counted(db)
    assert sum(maintained(db)["orders"].values()) == 240


def test_the_metrics_and_status_read_neither_orders_nor_attempts_whole(db):
    # Enough rows that the planner would rather scan them than use a totals table, if it could.
    db.execute(
        """
        INSERT INTO orders (id, provider_key, provider, status, request, request_hash, due_at, updated_at)
        SELECT gen_random_uuid(), gen_random_uuid(), (ARRAY['extend', 'chaiz', 'webroot'])[1 + i % 3],
               CASE WHEN i % 500 = 0 THEN 'waiting' WHEN i % 97 = 0 THEN 'in_doubt' ELSE 'placed' END,
               '{}'::jsonb, 'h', now() + make_interval(secs => i), now()
        FROM generate_series(1, 30000) AS i
        """
    )
    db.execute("INSERT INTO attempts (order_id, number, outcome, latency_ms) SELECT id, 1, 'placed', 42 FROM orders")
    db.execute("ANALYZE orders")
    db.execute("ANALYZE attempts")
    from orderrelay.store import queries
    from orderrelay.tools.scale import explain, seq_scans

    for query in (
        queries.FOLD_ORDER_TOTALS,
        queries.ORDER_TOTALS,
        queries.FOLD_ATTEMPT_TOTALS,
        queries.ATTEMPT_TOTALS,
        queries.OLDEST_OPEN,
        queries.OLDEST_DUE,
    ):
        params = {"providers": ["extend", "chaiz", "webroot"]} if query is queries.OLDEST_OPEN else None
        scanned = {"orders", "attempts"} & set(seq_scans(explain(db, query, params)))
        assert not scanned, f"a sequential scan of {scanned} in\n{query}"


def test_the_collector_reports_the_totals(runtime, db, sandbox):
    step = pipeline.intake(runtime, {"provider": "extend", "order": extend_order("tot-m")})
    pipeline.place(runtime, step.order_id)
    families = {m.name: m for m in PostgresCollector(runtime.db).collect()}
    extend_placed = {"provider": "extend", "status": "placed"}
    (sample,) = [s for s in families["orderrelay_orders"].samples if s.labels == extend_placed]
    assert sample.value == 1
    latency = {s.name: s.value for s in families["orderrelay_provider_latency_seconds"].samples if "_count" in s.name}
    assert latency == {"orderrelay_provider_latency_seconds_count": 1}
    assert families["orderrelay_attempts"].samples[0].value == 1


def test_each_latency_falls_in_the_bucket_the_metrics_read_its_bounds_from(db):
    bounds = db.execute("SELECT orderrelay_latency_bounds() AS b").fetchone()["b"]
    for ms in (0.5, 10, 10.01, 99, 250, 29999, 30000, 30001):
        expected = next((b for b in bounds if ms <= b), float("inf"))
        assert db.execute("SELECT orderrelay_latency_le(%s) AS le", [ms]).fetchone()["le"] == expected
    assert db.execute("SELECT orderrelay_latency_le(NULL) AS le").fetchone()["le"] == -1


def test_one_sweep_releases_every_due_order_not_a_thousand(runtime, db):
    """Orders falling due together (100,000 at midnight) go out in one run, batch after batch."""
    db.execute(
        "INSERT INTO orders (id, provider_key, provider, status, request, request_hash, due_at) "
        "SELECT gen_random_uuid(), gen_random_uuid(), 'extend', 'waiting', '{}'::jsonb, 'h', now() - interval '1 s' "
        "FROM generate_series(1, 2100)"
    )
    assert len(pipeline.sweep(runtime)) == 2100
    assert pipeline.sweep(runtime) == []  # each marked as sent: not again within the grace period


def test_the_latest_failures_come_from_their_indexes(db):
    from orderrelay.store import queries
    from orderrelay.tools.scale import explain, seq_scans, shape

    db.execute(
        "INSERT INTO orders (id, provider_key, provider, status, request, request_hash, updated_at) "
        "SELECT gen_random_uuid(), gen_random_uuid(), 'extend', CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 99 = 0 "
        "THEN 'in_doubt' ELSE 'placed' END, '{}'::jsonb, 'h', now() - make_interval(secs => i) "
        "FROM generate_series(1, 20000) AS i"
    )
    db.execute("ANALYZE orders")
    plan = explain(db, queries.RECENT_FAILURES, {"limit": 10})
    assert "orders_failed" in shape(plan) and "orders_in_doubt" in shape(plan) and seq_scans(plan) == []
    latest = store.recent_failures(db)
    assert len(latest) == 10 and [r["updated_at"] for r in latest] == sorted(
        (r["updated_at"] for r in latest), reverse=True
    )
