"""``orderrelay demo``: the main job end to end, on the configured Redis and Postgres or embedded ones.

It starts the sandbox, a real Celery worker and beat, submits three Extend orders (one valid, one invalid,
one with a short fractional-day ``transactionDelay``) and one valid order each for the other providers, shows
their progress live, prints the outcome table, and exits 0 only if every order ended as expected.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.live import Live

from orderrelay import providers
from orderrelay.foundation.constants import FINAL_STATUSES, Status
from orderrelay.tools.harness import Harness, harness

console = Console(highlight=False)
DELAY_DAYS = 0.0001  # 8.64 seconds


def jobs(run_id: str, h: Harness) -> dict[str, tuple[dict, str]]:
    """The demo's jobs by name, each with the status it must end in: Extend's invalid and delayed orders, and a
    valid sample order of every provider in the table (its plan, quote or cart made through the sandbox)."""
    extend = providers.get("extend")
    invalid = extend.sample(f"demo-{run_id}-invalid", currency="XXY", total=-5)
    invalid["lineItems"][0]["plan"]["purchasePrice"] = 19.99
    del invalid["customer"]["email"]
    orders = {
        "extend valid": ("extend", extend.sample(f"demo-{run_id}-valid"), Status.PLACED),
        "extend invalid": ("extend", invalid, Status.REJECTED),
        "extend delayed": (
            "extend",
            extend.sample(f"demo-{run_id}-delayed", transactionDelay=DELAY_DAYS),
            Status.PLACED,
        ),
    }
    for provider, module in providers.REGISTRY.items():
        if provider != "extend":
            orders[f"{provider} valid"] = (provider, module.sample(f"demo-{run_id}-{provider}", h.admin), Status.PLACED)
    return {
        name: (
            {"provider": provider, "order": order, "idempotency_key": f"demo-{run_id}-{name.replace(' ', '-')}"},
            status,
        )
        for name, (provider, order, status) in orders.items()
    }


def run(*, timeout: float, workdir: Path) -> int:
    with harness("demo", sweep_interval="2", backoff_max="5") as h:
        console.print("starting a worker and beat ...")
        h.worker("demo-worker", concurrency=16)
        h.beat()
        ok = _submit_and_watch(h, timeout)
    if ok:
        console.print("[bold green]demo passed[/]: every order ended as expected.")
        return 0
    console.print("[bold red]demo failed[/]: see the process logs above.")
    return 1


def _submit_and_watch(h: Harness, timeout: float) -> bool:
    import psycopg
    from psycopg.rows import dict_row

    from orderrelay.config.settings import get_settings
    from orderrelay.foundation.vault import Vault
    from orderrelay.producer import send
    from orderrelay.tools.tables import orders_table
    from orderrelay.worker.app import app

    run_id = uuid.uuid4().hex[:8]
    demo_jobs = jobs(run_id, h)
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
        psycopg.connect(h.database_url, row_factory=dict_row, autocommit=True) as conn,
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
        made = h.admin(f"{provider}/orders", method="GET")["count"]
        report(made == expected, f"the sandbox's {provider} made {made} order(s) (expected {expected})")
    return ok
