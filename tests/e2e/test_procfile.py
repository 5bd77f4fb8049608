"""``honcho start`` on the Procfile, as the README tells a developer to run the stack locally: every process stays
up, and an order sent to the machine's Redis is placed at the sandbox the Procfile started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from orderrelay.tools import embedded, processes
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_honcho_start_keeps_the_stack_up_and_places_an_order(broker_url, database_url, db, logs):
    sandbox_port, flower_port, base_port = embedded.free_port(), embedded.free_port(), embedded.free_port()
    env = processes.environment(broker_url, database_url, sandbox_port, sweep_interval="1")
    env.update(
        SANDBOX_PORT=str(sandbox_port),
        FLOWER_PORT=str(flower_port),
        ORDERRELAY_API_KEYS="honcho=sha256:" + "0" * 64,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # orderrelay and celery, as .venv's
    )
    log = (logs / "honcho.log").open("wb")
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "-p", str(base_port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = logs / "honcho.log"
    try:
        wait_until(lambda: output.read_text().count("orderrelay worker ready") >= 2, 90, message="both workers ready")
        wait_until(lambda: "sandbox on http" in output.read_text(), 30, message="the sandbox to listen")
        time.sleep(3)  # past the moment a process that exits would take honcho down with it
        assert honcho.poll() is None, output.read_text()[-3000:]
        from orderrelay.config.settings import get_settings
        from orderrelay.foundation.vault import Vault
        from orderrelay.producer import send
        from orderrelay.providers import get
        from orderrelay.worker.app import app

        key = f"honcho-{uuid.uuid4().hex[:8]}"
        send(app, Vault(get_settings().fernet_keys), "extend", get("extend").sample(key), idempotency_key=key)
        row = wait_until(
            lambda: db.execute(
                "SELECT * FROM orders WHERE idempotency_key = %s AND status = 'placed'", [key]
            ).fetchone(),
            60,
            message="the order to be placed by the Procfile's worker",
        )
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{sandbox_port}/_sandbox/extend/orders", timeout=5) as resp:
            made = json.load(resp)
        assert [o["id"] for o in made["orders"] if o["transactionId"] == key] == [row["provider_ref"]]
        assert honcho.poll() is None, output.read_text()[-3000:]
        assert "exited with code" not in output.read_text()
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGINT)
            try:
                honcho.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(honcho.pid, signal.SIGKILL)
        log.close()
