"""``orderrelay demo``: the main job end to end, on the configured Redis and Postgres or embedded ones.

It starts the sandbox, a real Celery worker and beat, submits three Extend orders (one valid, one invalid,
one with a short fractional-day ``transactionDelay``) and one valid order each for the other providers, shows
their progress live, prints the outcome table, and exits 0 only if every order ended as expected.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
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


def run(*, timeout: float, workdir: Path, keep: bool = False) -> int:
    """The demo; with ``keep`` the stack stays up afterwards (until Ctrl-C), with the commands to look at it."""
    with harness("demo", sweep_interval="2", backoff_max="5") as h:
        console.print("starting a worker and beat ...")
        h.worker("demo-worker", concurrency=16)
        h.beat()
        ok = _submit_and_watch(h, timeout)
        if ok:
            console.print("[bold green]demo passed[/]: every order ended as expected.")
        else:
            console.print("[bold red]demo failed[/]: see the process logs below.")
        if keep:
            _keep(h, workdir)
        else:
            console.print("next: `python3 dev.py demo --keep` leaves this stack up to look at; README, Running it")
    return 0 if ok else 1


def _keep(h: Harness, workdir: Path) -> None:
    """Write the stack's environment to ``demo.env`` (with a new API key) and wait for Ctrl-C, saying how to look."""
    import secrets
    import signal
    import threading

    from orderrelay.config.settings import key_entry

    api_key = secrets.token_urlsafe(24)
    env = {k: v for k, v in h.env.items() if k.startswith("ORDERRELAY_")}
    env["ORDERRELAY_API_KEYS"] = key_entry("demo", api_key, "operator")
    path = workdir / "demo.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    path.chmod(0o600)  # it holds the demo's Fernet key and the sandbox's credentials
    console.print(
        "\n[bold]The stack is up[/] (Redis, PostgreSQL, the sandbox, a worker, beat); Ctrl-C stops it.\n"
        f"Its environment is in {path}. In another shell, in this folder:\n"
        "  . .venv/bin/activate; set -a; . ./demo.env; set +a\n"
        "  orderrelay list                      # the demo's orders\n"
        "  orderrelay show <id>                 # one of them: its attempts and events (the id's first digits do)\n"
        "  orderrelay status                    # queues, workers, the oldest waiting change\n"
        "  orderrelay flower --port 5555        # Flower on http://127.0.0.1:5555\n"
        "  orderrelay api --port 8080           # the intake API; its page on http://127.0.0.1:8080/docs\n"
        f"  curl -H 'Authorization: Bearer {api_key}' http://127.0.0.1:8080/orders\n"
        f"  the sandbox: {h.sandbox_url}/_sandbox/extend/orders"
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    console.print("stopping ...")


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
    title = f"orders of run {run_id}"
    # On a terminal the table is redrawn in place and stays; piped (or in CI) it is printed once, at the end.
    live = Live(console=console, refresh_per_second=4) if console.is_terminal else contextlib.nullcontext()
    with psycopg.connect(h.database_url, row_factory=dict_row, autocommit=True) as conn, live:
        while time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT * FROM orders WHERE idempotency_key = ANY(%s) ORDER BY created_at", [list(names)]
            ).fetchall()
            if isinstance(live, Live):
                live.update(orders_table(rows, title=title, width=console.width))
            if len(rows) == len(names) and all(r["status"] in FINAL_STATUSES for r in rows):
                break
            time.sleep(0.25)
    if not console.is_terminal:
        console.print(orders_table(rows, title=title, width=console.width))
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
    placed = Counter(job["provider"] for job, status in demo_jobs.values() if status == Status.PLACED)
    for provider in providers.REGISTRY:
        expected = placed[provider]
        made = h.admin(f"{provider}/orders", method="GET")["count"]
        report(made == expected, f"the sandbox's {provider} made {made} order(s) (expected {expected})")
    return ok
