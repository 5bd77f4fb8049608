"""A webhook receiver that hangs takes no placing capacity: deliveries run on the notifier (a worker of its own
for the notifications queue, as the Procfile and compose run it), each try ends at ORDERRELAY_NOTIFY_TIMEOUT, and
the notify sweep does not feed a second message for a delivery already on its way. Real workers and beat."""

from __future__ import annotations

import re
import statistics
import time

import pytest
import redis

from orderrelay.config.settings import get_settings
from orderrelay.foundation.constants import QUEUE_NOTIFICATIONS, Status
from orderrelay.sandbox.samples import extend_order
from orderrelay.tools import processes
from tests.conftest import started, wait_until

pytestmark = pytest.mark.e2e
ORDERS = 40


def test_a_hanging_receiver_delays_no_order_and_gets_one_message_per_try(service_env, logs, db, sandbox):
    env = {**service_env, "ORDERRELAY_NOTIFY_TIMEOUT": "1", "ORDERRELAY_NOTIFY_SWEEP_INTERVAL": "1"}
    env["ORDERRELAY_BROKER_URL"] = env["ORDERRELAY_BROKER_URL"].rsplit("/", 1)[0] + "/12"
    redis.Redis.from_url(env["ORDERRELAY_BROKER_URL"]).flushdb()
    sandbox.script("receiver", latency_ms=30_000)  # the receiver accepts the connection and never answers in time
    hook = {"url": f"{sandbox.url}/_receiver/checkout"}
    placing = processes.worker(env, logs, name="placing", concurrency=4, queues=get_settings().placing_queues)
    notifier = processes.worker(env, logs, name="notifier", concurrency=2, queues=(QUEUE_NOTIFICATIONS,))
    with started(placing), started(notifier), started(processes.beat(env, logs)):
        from celery import Celery

        app = Celery(broker=env["ORDERRELAY_BROKER_URL"], set_as_current=False)
        for i in range(ORDERS):
            job = {"provider": "extend", "order": extend_order(f"hang-{i}"), "idempotency_key": f"hang-{i}"}
            app.send_task("orders.submit", kwargs={**job, "notify": hook}, queue="orders", kwargsrepr=repr(i))
            time.sleep(0.05)

        def placed() -> int:
            query = "SELECT count(*) AS n FROM orders WHERE idempotency_key LIKE 'hang-%%' AND status = %s"
            return db.execute(query, [Status.PLACED]).fetchone()["n"]

        wait_until(lambda: placed() == ORDERS, 60, message="every order placed beside a hanging receiver")
        time.sleep(8)  # the notifier works through deliveries that each time out, the sweep runs every second
        rows = db.execute(
            "SELECT extract(epoch FROM placed_at - created_at) * 1000 AS ms FROM orders WHERE idempotency_key "
            "LIKE 'hang-%%'"
        ).fetchall()
        attempts = db.execute(
            "SELECT a.error FROM notification_attempts a JOIN notifications n ON n.id = a.notification_id"
        ).fetchall()
        notes = db.execute("SELECT count(*) AS n FROM notifications").fetchone()["n"]
        sent = len(re.findall(r"notifications\.deliver\[[0-9a-f-]+\] received", notifier.log()))
    assert "notifications.deliver[" not in placing.log()  # placing threads never held a delivery
    assert attempts and all("Timeout" in (a["error"] or "") for a in attempts)  # each try ended at the timeout
    # one message per delivery that became due (its first try, and a retry that fell due), not one per sweep
    assert sent <= notes + len(attempts), (sent, notes, len(attempts))
    print(f"submit->placed beside a hanging receiver: p50 {statistics.median(r['ms'] for r in rows):.0f} ms")
