"""A sixth provider added from the test tree, as a deployment would add one: three files (``tests/toy/provider.py``,
``schema.py``, ``sandbox.py``) and one registry line, its entry in ORDERRELAY_PROVIDERS. Nothing in orderrelay
names it; a real worker, a real sandbox, the producer, Redis and Postgres place its order end to end."""

from __future__ import annotations

import uuid

import pytest

from orderrelay.foundation.constants import Status
from orderrelay.tools import embedded, processes
from tests.conftest import started, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def toy_env(service_env, logs):
    env = dict(service_env)
    env["ORDERRELAY_PROVIDERS"] += ",tests.toy.provider"  # the one registry line
    port = embedded.free_port()
    with started(processes.sandbox(env, port, logs)):
        env["ORDERRELAY_TOY_BASE_URL"] = f"http://127.0.0.1:{port}/toy"
        env["ORDERRELAY_TOY_TOKEN"] = "sandbox-toy-token"
        yield env, port


@pytest.fixture(scope="module")
def toy_worker(toy_env, logs):
    env, _ = toy_env
    with started(processes.worker(env, logs, name="toy-worker", concurrency=4)) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()[-3000:]


def admin(port: int, path: str) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/{path}", timeout=10) as resp:
        return json.load(resp)


def test_a_toy_provider_from_the_test_tree_places_an_order_once(toy_env, toy_worker, db):
    from orderrelay.producer import submit_order
    from tests.toy import provider as toy

    env, port = toy_env
    key = f"toy-{uuid.uuid4().hex[:8]}"
    order_id = submit_order("toy", toy.sample(key), idempotency_key=key)

    def placed():
        row = db.execute("SELECT * FROM orders WHERE id = %s", [order_id]).fetchone()
        return row if row and row["status"] in (Status.PLACED, Status.FAILED, Status.REJECTED) else None

    row = wait_until(placed, 60, message="the toy order to settle")
    assert row["status"] == Status.PLACED, (row["status"], row["errors"], row["last_error"])
    made = admin(port, "toy/orders")
    assert made["count"] == 1 and made["create_requests"] == 1
    assert row["provider"] == "toy" and row["provider_ref"] == made["orders"][0]["id"]
    assert made["orders"][0]["reference"] == key
    attempts = db.execute("SELECT count(*) AS n FROM attempts WHERE order_id = %s", [order_id]).fetchone()["n"]
    assert attempts == 1
    # its placement went through a queue of its own, declared from the table: orders.toy
    assert "orders.place" in toy_worker.log()
    assert "orders.toy" in processes_queues(env)


def processes_queues(env) -> set[str]:
    """The queues a worker of ``env`` serves by default: what the Celery configuration declares there."""
    import subprocess
    import sys

    code = "from orderrelay.worker.app import app; print(','.join(q.name for q in app.conf.task_queues))"
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
    return set(out.strip().split(","))


def test_a_toy_order_with_a_bad_body_is_rejected_by_its_own_schema(toy_env, toy_worker, db):
    from orderrelay.producer import submit_order

    key = f"toy-bad-{uuid.uuid4().hex[:8]}"
    submit_order("toy", {"reference": key, "toy": "", "quantity": 0}, idempotency_key=key)
    row = wait_until(
        lambda: db.execute("SELECT * FROM orders WHERE idempotency_key = %s", [key]).fetchone(),
        60,
        message="the bad toy order to be rejected",
    )
    assert row["status"] == Status.REJECTED and row["provider"] == "toy"
    assert set(row["errors"]) == {"order.toy", "order.quantity"}, row["errors"]
