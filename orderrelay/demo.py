"""``orderrelay demo``: the main job end to end, on the configured Redis and Postgres or embedded ones.

It starts the sandbox, a real Celery worker and beat, submits three Extend orders (one valid, one invalid,
one with a short fractional-day ``transactionDelay``) and one valid order each for the other providers, shows
their progress live, prints the outcome table, and exits 0 only if every order ended as expected.
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
from orderrelay.constants import FINAL_STATUSES, Status
from sandbox.samples import adobe_order, battleface_order, chaiz_order, webroot_order
from sandbox.samples import extend_order as sample_order

console = Console(highlight=False)
DELAY_DAYS = 0.0001  # 8.64 seconds


def jobs(run_id: str, sandbox_url: str) -> dict[str, tuple[dict, str]]:
    """The demo's jobs by name, each with the status it must end in; ids come from the sandbox's admin API."""
    invalid = sample_order(f"demo-{run_id}-invalid", currency="XXY", total=-5)
    invalid["lineItems"][0]["plan"]["purchasePrice"] = 19.99
    del invalid["customer"]["email"]
    plan = _admin(sandbox_url, "chaiz/plans")
    customer, offer = _admin(sandbox_url, "adobe_vip/customers"), _admin(sandbox_url, "adobe_vip/offers")
    _admin(sandbox_url, "battleface/products")
    quote = _admin(sandbox_url, "battleface/quotes")["quote_id"]
    cart = _admin(sandbox_url, "webroot/carts")["VendorOrderCode"]
    orders = {
        "extend valid": ("extend", sample_order(f"demo-{run_id}-valid"), Status.PLACED),
        "extend invalid": ("extend", invalid, Status.REJECTED),
        "extend delayed": (
            "extend",
            sample_order(f"demo-{run_id}-delayed", transactionDelay=DELAY_DAYS),
            Status.PLACED,
        ),
        "chaiz valid": ("chaiz", chaiz_order(plan["searchResultPlanId"], plan["addons"][:1]), Status.PLACED),
        "adobe_vip valid": ("adobe_vip", adobe_order(customer["customerId"], offer["offerId"]), Status.PLACED),
        "battleface valid": ("battleface", battleface_order(quote), Status.PLACED),
        "webroot valid": ("webroot", webroot_order(cart), Status.PLACED),
    }
    return {
        name: (
            {"provider": provider, "order": order, "idempotency_key": f"demo-{run_id}-{name.replace(' ', '-')}"},
            status,
        )
        for name, (provider, order, status) in orders.items()
    }


def _admin(sandbox_url: str, path: str, method: str = "POST") -> dict:
    request = urllib.request.Request(
        f"{sandbox_url}/_sandbox/{path}",
        data=b"{}" if method == "POST" else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.load(resp)


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

    from config.settings import get_settings
    from orderrelay.cli import orders_table
    from orderrelay.producer import send
    from orderrelay.vault import Vault
    from worker.app import app

    run_id = uuid.uuid4().hex[:8]
    sandbox_url = f"http://127.0.0.1:{port}"
    demo_jobs = jobs(run_id, sandbox_url)
    vault = Vault(get_settings().fernet_keys)
    for job, _ in demo_jobs.values():
        send(app, vault, job["provider"], job["order"], idempotency_key=job["idempotency_key"])
    console.print(
        f"submitted {len(demo_jobs)} orders (run {run_id}); the delayed one waits "
        f"{timedelta(days=DELAY_DAYS).total_seconds():.1f}s"
    )
    names = {job["idempotency_key"]: name for name, (job, _) in demo_jobs.items()}
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    with (
        psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn,
        Live(console=console, refresh_per_second=4) as live,
    ):
        while time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT * FROM orders WHERE idempotency_key = ANY(%s) ORDER BY created_at", [list(names)]
            ).fetchall()
            live.update(orders_table(rows, title=f"orders of run {run_id}"))
            if len(rows) == len(names) and all(r["status"] in FINAL_STATUSES for r in rows):
                break
            time.sleep(0.25)
    console.print()
    by_name = {names[r["idempotency_key"]]: r for r in rows}
    ok = True

    def report(good: bool, text: str) -> None:
        nonlocal ok
        ok &= good
        console.print(f"{'[green]ok[/]' if good else '[red]FAIL[/]'}  {text}")

    for name, (_, status) in demo_jobs.items():
        got = by_name[name]["status"] if name in by_name else "missing"
        report(got == status, f"{name}: expected {status}, got {got}")
    for path, messages in (by_name.get("extend invalid") or {}).get("errors", {}).items():
        console.print(f"      field error  {path}: {' '.join(messages)}")
    delayed = by_name.get("extend delayed")
    if delayed and delayed["placed_at"]:
        waited = (delayed["placed_at"] - delayed["created_at"]).total_seconds()
        needed = timedelta(days=DELAY_DAYS).total_seconds()
        report(
            waited >= needed, f"extend delayed: placed {waited:.1f}s after it was received (wait asked: {needed:.1f}s)"
        )
    for provider, expected in (("extend", 2), ("chaiz", 1), ("adobe_vip", 1), ("battleface", 1), ("webroot", 1)):
        made = _admin(sandbox_url, f"{provider}/orders", method="GET")["count"]
        report(made == expected, f"the sandbox's {provider} made {made} order(s) (expected {expected})")
    return ok
