"""``orderrelay demo``: the main job end to end, on the configured Redis and Postgres or embedded ones.

It starts the sandbox, a real Celery worker and beat, submits three Extend orders (one valid, one invalid,
one with a short fractional-day ``transactionDelay``), shows their progress live, prints the outcome table,
and exits 0 only if every order ended as expected.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.live import Live

from orderrelay import embedded, processes
from orderrelay.constants import FINAL_STATUSES, TASK_SUBMIT, Status
from sandbox.samples import extend_order as sample_order

console = Console(highlight=False)
DELAY_DAYS = 0.0001  # 8.64 seconds


def jobs(run_id: str) -> dict[str, dict]:
    """The demo's three jobs by name, each with the status it must end in."""
    invalid = sample_order(f"demo-{run_id}-invalid", currency="XXY", total=-5)
    invalid["lineItems"][0]["plan"]["purchasePrice"] = 19.99
    del invalid["customer"]["email"]
    return {
        "valid": {
            "provider": "extend",
            "order": sample_order(f"demo-{run_id}-valid"),
            "idempotency_key": f"demo-{run_id}-valid",
        },
        "invalid": {"provider": "extend", "order": invalid, "idempotency_key": f"demo-{run_id}-invalid"},
        "delayed": {
            "provider": "extend",
            "order": sample_order(f"demo-{run_id}-delayed", transactionDelay=DELAY_DAYS),
            "idempotency_key": f"demo-{run_id}-delayed",
        },
    }


EXPECTED = {"valid": Status.PLACED, "invalid": Status.REJECTED, "delayed": Status.PLACED}


def run(*, timeout: float, workdir: Path) -> int:
    logs = Path(tempfile.mkdtemp(prefix="orderrelay-demo-"))
    with embedded.services(os.environ.get("ORDERRELAY_BROKER_URL"), os.environ.get("ORDERRELAY_DATABASE_URL")) as (
        broker_url,
        database_url,
        notes,
    ):
        for note in notes:
            console.print(f"[dim]using {note}[/]")
        port = embedded.free_port()
        env = processes.environment(broker_url, database_url, port, sweep_interval="2", backoff_max="5")
        os.environ.update({k: v for k, v in env.items() if k.startswith("ORDERRELAY_")})
        from store.db import migrate

        migrate(database_url)
        started: list[processes.Process] = []
        try:
            console.print("starting the sandbox, a worker and beat ...")
            started.append(processes.sandbox(env, port, logs))
            started.append(processes.worker(env, logs, name="demo-worker", concurrency=16))
            started.append(processes.beat(env, logs))
            ok = _submit_and_watch(database_url, port, timeout)
        finally:
            for proc in reversed(started):
                proc.stop()
    if ok:
        shutil.rmtree(logs, ignore_errors=True)
        console.print("[bold green]demo passed[/]: every order ended as expected.")
        return 0
    console.print(f"[bold red]demo failed[/]; process logs are in {logs}")
    return 1


def _submit_and_watch(database_url: str, port: int, timeout: float) -> bool:
    import psycopg
    from psycopg.rows import dict_row

    from orderrelay.cli import orders_table
    from worker.app import app

    run_id = uuid.uuid4().hex[:8]
    demo_jobs = jobs(run_id)
    for name, job in demo_jobs.items():
        app.send_task(TASK_SUBMIT, kwargs=job, kwargsrepr=repr({"provider": job["provider"], "job": name}))
    console.print(
        f"submitted {len(demo_jobs)} Extend orders (run {run_id}); the delayed one waits "
        f"{timedelta(days=DELAY_DAYS).total_seconds():.1f}s"
    )
    keys = {job["idempotency_key"]: name for name, job in demo_jobs.items()}
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    with (
        psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn,
        Live(console=console, refresh_per_second=4) as live,
    ):
        while time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT * FROM orders WHERE idempotency_key = ANY(%s) ORDER BY created_at", [list(keys)]
            ).fetchall()
            live.update(orders_table(rows, title=f"orders of run {run_id}"))
            if len(rows) == len(keys) and all(r["status"] in FINAL_STATUSES for r in rows):
                break
            time.sleep(0.25)
        console.print()
        delays = {
            r["idempotency_key"]: (r["placed_at"] - r["created_at"]).total_seconds() for r in rows if r["placed_at"]
        }
    by_name = {keys[r["idempotency_key"]]: r for r in rows}
    ok = True
    for name, status in EXPECTED.items():
        row = by_name.get(name)
        got = row["status"] if row else "missing"
        good = got == status
        ok &= good
        console.print(f"{'[green]ok[/]' if good else '[red]FAIL[/]'}  {name}: expected {status}, got {got}")
    rejected = by_name.get("invalid")
    if rejected and rejected["errors"]:
        for path, messages in rejected["errors"].items():
            console.print(f"      invalid order field error  {path}: {' '.join(messages)}")
    wait = delays.get(demo_jobs["delayed"]["idempotency_key"])
    needed = timedelta(days=DELAY_DAYS).total_seconds()
    if wait is not None:
        good = wait >= needed
        ok &= good
        console.print(
            f"{'[green]ok[/]' if good else '[red]FAIL[/]'}  delayed order placed {wait:.1f}s after "
            f"it was received (wait asked: {needed:.1f}s)"
        )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/extend/orders", timeout=5) as resp:
        created = json.load(resp)["count"]
    good = created == 2
    ok &= good
    console.print(
        f"{'[green]ok[/]' if good else '[red]FAIL[/]'}  the sandbox's Extend made {created} order(s) (expected 2)"
    )
    return ok
