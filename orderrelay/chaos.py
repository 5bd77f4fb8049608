"""``orderrelay chaos``: the fault drill. Orders across every provider, while workers are SIGKILLed mid-call,
Redis is flushed, Postgres connections are cut and the sandbox answers 500s, 429s, slowly, or drops the
connection after making the order. Then it waits for every order to end and counts what was lost or doubled.

The jobs are sent at a steady rate; the damage starts once every job has its row (before intake a job is
only a Redis message, kept by Redis's own at-least-once delivery: see the README) and lands while orders
are being placed: workers are killed only while some order is mid-call. Some jobs wait 2 to 20 s (Extend's
``transactionDelay``, or ``not_before``), so orders are still being placed while the damage lands.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import redis
from psycopg.rows import dict_row
from rich.progress import Progress

from config.settings import get_settings
from orderrelay.constants import FINAL_STATUSES, PROVIDER_IDS, Status
from orderrelay.harness import Harness, console, harness
from orderrelay.producer import send
from orderrelay.vault import Vault
from sandbox.samples import adobe_order, battleface_order, chaiz_order, extend_order, webroot_order

# Keyed providers must never see a second order; the others must never be sent one blindly either.
NATURAL_KEYS = {
    "extend": lambda o: o["transactionId"],
    "adobe_vip": lambda o: o.get("externalReferenceId"),
    "webroot": lambda o: o["VendorOrderCode"],
    "chaiz": lambda o: o.get("externalId"),
    "battleface": lambda o: o["quote_id"],
}
FAULTS = [500, 503, {"status": 429, "retry_after": 1}, "drop_after_create", "drop"]


@dataclass
class Report:
    """What the drill did and found."""

    submitted: int = 0
    end_states: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=dict)
    in_doubt: list[dict] = field(default_factory=list)
    kills_asked: int = 0
    worker_kills: int = 0
    calls_cut: int = 0  # attempts whose worker was killed during the call
    redis_flushes: int = 0
    postgres_disconnects: int = 0
    seconds: float = 0.0

    def passed(self) -> bool:
        """Nothing lost, nothing doubled, every in-doubt order accounted for, and all the damage was done."""
        accounted = all(d["accounted"] for d in self.in_doubt)
        damage = self.worker_kills >= self.kills_asked and self.redis_flushes and self.postgres_disconnects
        return not self.lost and not any(self.duplicates.values()) and accounted and bool(damage)


def _jobs(h: Harness, count: int, rng: random.Random, run: str) -> list[dict]:
    plan = h.admin("chaiz/plans")
    customer, offer = h.admin("adobe_vip/customers")["customerId"], h.admin("adobe_vip/offers")["offerId"]
    h.admin("battleface/products")
    jobs = []
    for i in range(count):
        provider = PROVIDER_IDS[i % len(PROVIDER_IDS)]
        tag = f"chaos-{run}-{i}"
        not_before = None
        if provider == "extend":
            order = extend_order(tag, **({"transactionDelay": rng.uniform(2, 20) / 86400} if i % 7 == 0 else {}))
        elif provider == "chaiz":
            order = chaiz_order(plan["searchResultPlanId"])
            order["userDetails"]["externalId"] = tag
        elif provider == "adobe_vip":
            order = adobe_order(customer, offer, externalReferenceId=tag[-35:])
        elif provider == "battleface":
            order = battleface_order(h.admin("battleface/quotes")["quote_id"])
        else:
            order = webroot_order(h.admin("webroot/carts")["VendorOrderCode"])
        if provider != "extend" and i % 9 == 0:
            not_before = (datetime.now(UTC) + timedelta(seconds=rng.uniform(2, 20))).isoformat()
        natural = NATURAL_KEYS[provider](order["userDetails"] if provider == "chaiz" else order)
        jobs.append(
            {"provider": provider, "order": order, "idempotency_key": tag, "not_before": not_before, "natural": natural}
        )
    return jobs


def _send_all(app, vault: Vault, jobs: list[dict], rate: float) -> None:
    """Submit the jobs at a steady rate, so the drill's damage lands while orders are in flight."""
    for job in jobs:
        send(
            app,
            vault,
            job["provider"],
            job["order"],
            idempotency_key=job["idempotency_key"],
            not_before=job["not_before"],
        )
        time.sleep(1 / rate)


def _statuses(database_url: str, keys: list[str]) -> dict[str, str]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT idempotency_key, status FROM orders WHERE idempotency_key = ANY(%s)", [keys])
        return {r["idempotency_key"]: r["status"] for r in rows}


def _disconnect_postgres(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def run(
    *, orders: int, kills: int, workers: int, timeout: float, seed: int | None, out: Path | None, rate: float = 100.0
) -> int:
    rng = random.Random(seed)
    report = Report(kills_asked=kills)
    started = time.monotonic()
    settings = dict(
        lease_seconds="6",
        sweep_interval="1",
        requeue_grace="4",
        countdown_horizon="30",
        visibility_timeout="60",
        max_attempts="12",
        backoff_base="0.2",
        backoff_max="2",
        breaker_failures="8",
        breaker_cooldown="1",
        retry_rounds="0",
        db_pool_size="8",
    )
    with harness("chaos", **settings) as h:
        pool = [h.worker(f"chaos-{n}", concurrency=32) for n in range(workers)]
        h.beat()
        for provider in PROVIDER_IDS:
            script = [rng.choice(FAULTS) if rng.random() < 0.25 else 200 for _ in range(orders)]
            h.admin(f"{provider}/faults", {"latency_ms": 800, "script": script})
        run_id = uuid.uuid4().hex[:6]
        jobs = _jobs(h, orders, rng, run_id)
        keys = [job["idempotency_key"] for job in jobs]
        vault = Vault(get_settings().fernet_keys)
        from worker.app import app

        report.submitted = len(jobs)
        sender = threading.Thread(target=_send_all, args=(app, vault, jobs, rate), daemon=True)
        sender.start()
        deadline = time.monotonic() + timeout
        next_kill = time.monotonic() + 1.0
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("placing under fire", total=len(jobs))
            while time.monotonic() < deadline:
                statuses = _statuses(h.database_url, keys)
                counts = Counter(statuses.values())
                done = sum(counts[s] for s in FINAL_STATUSES)
                progress.update(task, completed=done)
                if done == len(keys) and (report.worker_kills >= kills or not sender.is_alive()):
                    break
                now = time.monotonic()
                taken_in = len(statuses) == len(keys)  # every job has its row: damage from here on
                if report.worker_kills < kills and taken_in and counts[Status.PLACING] and now >= next_kill:
                    victim = rng.randrange(len(pool))
                    pool[victim].popen.send_signal(signal.SIGKILL)
                    pool[victim].popen.wait()
                    report.worker_kills += 1
                    pool[victim] = h.worker(f"chaos-{victim}-{report.worker_kills}", concurrency=32)
                    next_kill = time.monotonic() + rng.uniform(0.3, 1.0)
                if not report.redis_flushes and report.worker_kills >= min(2, kills) and taken_in:
                    redis.Redis.from_url(h.broker_url).flushdb()
                    report.redis_flushes = 1
                if not report.postgres_disconnects and report.worker_kills >= min(3, kills) and taken_in:
                    _disconnect_postgres(h.database_url)
                    report.postgres_disconnects = 1
                time.sleep(0.3)
        _account(h, report, keys, jobs)
    report.seconds = round(time.monotonic() - started, 1)
    _print(report)
    if out:
        out.write_text(json.dumps(asdict(report) | {"passed": report.passed()}, indent=2, default=str))
    return 0 if report.passed() else 1


def _account(h: Harness, report: Report, keys: list[str], jobs: list[dict]) -> None:
    statuses = _statuses(h.database_url, keys)
    with psycopg.connect(h.database_url, autocommit=True) as conn:
        report.calls_cut = conn.execute(
            "SELECT count(*) FROM attempts a JOIN orders o ON o.id = a.order_id "
            "WHERE o.idempotency_key = ANY(%s) AND a.error->>'message' = 'the worker was lost during the call'",
            [keys],
        ).fetchone()[0]
    report.end_states = dict(Counter(statuses.values()))
    report.lost = [k for k in keys if statuses.get(k) not in FINAL_STATUSES]
    made = {provider: h.admin(f"{provider}/orders", method="GET")["orders"] for provider in PROVIDER_IDS}
    counts = {provider: Counter(NATURAL_KEYS[provider](o) for o in orders) for provider, orders in made.items()}
    for provider, per_key in counts.items():
        report.duplicates[provider] = sum(n - 1 for n in per_key.values() if n > 1)
    by_key = {job["idempotency_key"]: job for job in jobs}
    for key, status in statuses.items():
        if status != Status.IN_DOUBT:
            continue
        job = by_key[key]
        at_provider = counts[job["provider"]][job["natural"]]
        report.in_doubt.append(
            {
                "key": key,
                "provider": job["provider"],
                "provider_has_it": at_provider == 1,
                "accounted": at_provider <= 1,
            }
        )


def _print(report: Report) -> None:
    from rich.table import Table

    table = Table("figure", "value", title="fault drill")
    table.add_row("orders submitted", str(report.submitted))
    for status, n in sorted(report.end_states.items()):
        table.add_row(f"  ended {status}", str(n))
    table.add_row("orders lost (no row, or never ended)", str(len(report.lost)))
    for provider, n in report.duplicates.items():
        table.add_row(f"duplicate orders at {provider}", str(n))
    made = sum(1 for d in report.in_doubt if d["provider_has_it"])
    table.add_row(
        "in doubt (the provider has it / has not)", f"{len(report.in_doubt)} ({made} / {len(report.in_doubt) - made})"
    )
    table.add_row("worker kills (SIGKILL)", str(report.worker_kills))
    table.add_row("  provider calls cut by them", str(report.calls_cut))
    table.add_row("Redis flushes", str(report.redis_flushes))
    table.add_row("Postgres disconnects", str(report.postgres_disconnects))
    table.add_row("seconds", str(report.seconds))
    console.print(table)
    console.print("[bold green]drill passed[/]" if report.passed() else "[bold red]drill failed[/]")
