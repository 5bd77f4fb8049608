"""Beat's work against real workers and beat: an order an operator resolved is never sent again by a round, and
overlapping follow-up runs record (and notify) each Adobe change once."""

from __future__ import annotations

import time

import pytest
import redis

from orderrelay.foundation.constants import Status
from orderrelay.sandbox.samples import adobe_order, extend_order
from orderrelay.tools import processes
from tests.conftest import started, wait_until
from tests.e2e.test_worker import run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(service_env, logs):
    env = {
        **service_env,
        "ORDERRELAY_RETRY_ROUND_INTERVAL": "1",  # beat runs the rounds every second
        "ORDERRELAY_RETRY_ROUNDS": "3",
        "ORDERRELAY_FOLLOW_UP_INTERVAL": "1",
        "ORDERRELAY_MAX_ATTEMPTS": "3",
    }
    env["ORDERRELAY_BROKER_URL"] = env["ORDERRELAY_BROKER_URL"].rsplit("/", 1)[0] + "/13"
    redis.Redis.from_url(env["ORDERRELAY_BROKER_URL"]).flushdb()
    workers = [processes.worker(env, logs, name=f"beat-w{n}", concurrency=8) for n in range(2)]
    with started(workers[0]), started(workers[1]), started(processes.beat(env, logs)):
        from celery import Celery

        yield env, Celery(broker=env["ORDERRELAY_BROKER_URL"], set_as_current=False)


def order_of(db, key: str) -> dict | None:
    return db.execute("SELECT * FROM orders WHERE idempotency_key = %s", [key]).fetchone()


def test_an_order_resolved_failed_is_never_sent_again_by_beats_rounds(stack, db, sandbox):
    env, app = stack
    # In doubt, its last error retryable: the first request dropped (perhaps made), then 503s to the last attempt.
    sandbox.script(script=["drop", 503, 503, 503, 503, 503, 503])
    app.send_task(
        "orders.submit",
        kwargs={"provider": "extend", "order": extend_order("fin-1"), "idempotency_key": "fin-1"},
        queue="orders",
        kwargsrepr="'fin-1'",
    )
    order = wait_until(lambda: (o := order_of(db, "fin-1")) and o["status"] == Status.IN_DOUBT and o, 60)
    assert order["last_error"]["kind"] == "retryable"
    sandbox.script(script=[])  # a resend now would make the order
    made = sandbox.orders()["count"]
    result = run_cli(env, "resolve", str(order["id"]), "--failed", "--reason", "Extend support: no such order")
    assert result.returncode == 0, result.stderr
    time.sleep(6)  # six of beat's retry rounds
    after = order_of(db, "fin-1")
    assert (after["status"], after["retry_round"]) == (Status.FAILED, 0)
    assert sandbox.orders()["count"] == made


def test_overlapping_follow_up_runs_record_and_notify_each_change_once(stack, db, sandbox):
    _, app = stack
    customer = sandbox.admin("adobe_vip/customers", {})["customerId"]
    offer = sandbox.admin("adobe_vip/offers", {})["offerId"]
    hook = {"url": f"{sandbox.url}/_receiver/checkout"}
    keys = [f"fu-{n}" for n in range(8)]
    for key in keys:
        job = {"provider": "adobe_vip", "order": adobe_order(customer, offer), "idempotency_key": key, "notify": hook}
        app.send_task("orders.submit", kwargs=job, queue="orders", kwargsrepr=repr(key))
    placed = wait_until(
        lambda: (
            (rows := [order_of(db, k) for k in keys]) and all(r and r["status"] == Status.PLACED for r in rows) and rows
        ),
        60,
    )
    for row in placed:
        sandbox.admin(f"adobe_vip/orders/{row['provider_ref']}/status", {"status": "1000"})
    for _ in range(6):  # runs at once on both workers, besides beat's own every second
        app.send_task("orders.follow_up", queue="orders")
    wait_until(lambda: all(order_of(db, k)["provider_status"] == "1000" for k in keys), 60)
    time.sleep(3)  # later runs find nothing more to record
    for row in placed:
        changes = db.execute(
            "SELECT count(*) AS n FROM order_events WHERE order_id = %s AND reason LIKE '%%1002 -> 1000%%'", [row["id"]]
        ).fetchone()["n"]
        notes = db.execute("SELECT count(*) AS n FROM notifications WHERE order_id = %s", [row["id"]]).fetchone()["n"]
        assert (changes, notes) == (1, 2)  # one change; notified when placed, and once of the change
