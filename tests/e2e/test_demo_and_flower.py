"""What an operator sees: the demo's table fits 80 columns and is printed once, ending with what to do next; and
Flower's task list is the orders, not the housekeeping (the scheduled tasks and beat send no task events)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid

import pytest

from orderrelay.tools import processes
from tests.conftest import started

pytestmark = pytest.mark.e2e


def test_the_demo_fits_80_columns_and_prints_its_table_once(service_env):
    broker = service_env["ORDERRELAY_BROKER_URL"].rsplit("/", 1)[0] + "/14"
    env = {k: v for k, v in service_env.items() if not k.startswith("ORDERRELAY_")}
    env.update(ORDERRELAY_BROKER_URL=broker, ORDERRELAY_DATABASE_URL=service_env["ORDERRELAY_DATABASE_URL"])
    env.update(COLUMNS="80", TERM="dumb")
    result = subprocess.run(
        [sys.executable, "-m", "orderrelay.cli", "demo", "--timeout", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80][:3]
    assert sum("orders of run" in line for line in lines) == 1
    assert "next:" in result.stdout and "Warning" not in result.stderr, result.stderr[-2000:]


def test_flower_sees_the_orders_and_not_the_housekeeping(service_env, logs, tmp_path):
    from orderrelay.producer import submit_order
    from orderrelay.providers import get
    from orderrelay.worker.app import app

    seen: list[str] = []

    def listen() -> None:
        def record(event):
            if event.get("name") or event.get("uuid"):
                seen.append(f"{event['type']} {event.get('name') or event.get('uuid')}")

        with app.connection() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": record})
            with contextlib.suppress(TimeoutError, OSError):  # capture ends with a socket timeout
                receiver.capture(limit=None, timeout=12, wakeup=True)

    with started(processes.worker(service_env, logs, name="flower-worker", concurrency=4)):
        watcher = threading.Thread(target=listen, daemon=True)
        watcher.start()
        time.sleep(1)
        with started(processes.beat(service_env, tmp_path)):
            key = f"flower-{uuid.uuid4().hex[:6]}"
            order_id = submit_order("extend", get("extend").sample(key), idempotency_key=key)
            watcher.join(timeout=20)
    names = " ".join(seen)
    assert "task-succeeded" in names and order_id  # the orders' tasks are seen
    for housekeeping in ("orders.sweep", "notifications.sweep", "orders.retry_failed", "orders.follow_up"):
        assert housekeeping not in names, [s for s in seen if housekeeping in s][:3]
