"""Outcome notifications: signed webhooks to the sandbox's receiver, redelivered with the same event id, in
order; a Celery-task target gets the same body; no notification carries card data."""

from __future__ import annotations

import base64
import json

import pytest
import redis

from orderrelay.foundation.constants import Status
from orderrelay.providers.webhook import verify
from orderrelay.sandbox.samples import TEST_CARD, chaiz_order
from orderrelay.sandbox.samples import extend_order as sample_order
from orderrelay.tools import processes
from tests.conftest import started, wait_until

pytestmark = pytest.mark.e2e
SECRET = "sandbox-notify-secret-0123456789"


@pytest.fixture(scope="module")
def stack(service_env, logs):
    env = dict(service_env)
    env["ORDERRELAY_BROKER_URL"] = env["ORDERRELAY_BROKER_URL"].rsplit("/", 1)[0] + "/10"
    redis.Redis.from_url(env["ORDERRELAY_BROKER_URL"]).flushdb()
    with started(processes.worker(env, logs, name="notify-worker", concurrency=8)), started(processes.beat(env, logs)):
        from celery import Celery

        yield env, Celery(broker=env["ORDERRELAY_BROKER_URL"], set_as_current=False)


def submit(app, **job) -> None:
    app.send_task("orders.submit", kwargs=job, queue="orders", kwargsrepr="{...}")


def submit_hooked(app, sandbox, key: str) -> None:
    """An Extend job under ``key`` whose outcome goes to the sandbox's receiver."""
    hook = {"url": f"{sandbox.url}/_receiver/checkout"}
    submit(app, provider="extend", order=sample_order(key), idempotency_key=key, notify=hook)


def received(sandbox, count: int) -> list[dict]:
    return wait_until(
        lambda: (got := sandbox.admin("receiver/received")) and len(got) >= count and got,
        30,
        message=f"{count} deliveries",
    )


def test_each_end_state_is_delivered_once_signed(stack, db, sandbox):
    _, app = stack
    hook = {"url": f"{sandbox.url}/_receiver/checkout"}
    plan = sandbox.admin("chaiz/plans", {})
    submit(app, provider="extend", order=sample_order("n-placed"), idempotency_key="n-placed", notify=hook)
    submit(app, provider="extend", order=sample_order("n-bad", total=-1), idempotency_key="n-bad", notify=hook)
    sandbox.script("chaiz", script=["drop_after_create"])
    submit(app, provider="chaiz", order=chaiz_order(plan["searchResultPlanId"]), idempotency_key="n-doubt", notify=hook)
    deliveries = received(sandbox, 3)
    by_key = {d["json"]["idempotency_key"]: d for d in deliveries}
    assert {k: d["json"]["status"] for k, d in by_key.items()} == {
        "n-placed": Status.PLACED,
        "n-bad": Status.REJECTED,
        "n-doubt": Status.IN_DOUBT,
    }
    for delivery in deliveries:
        assert verify(SECRET, delivery["headers"]["OrderRelay-Signature"], delivery["body"].encode())
        assert delivery["headers"]["OrderRelay-Event-Id"] == delivery["json"]["event_id"]
        assert delivery["json"]["version"] == 1
        assert TEST_CARD not in delivery["body"]
    assert by_key["n-placed"]["json"]["provider_ref"]
    assert by_key["n-bad"]["json"]["error"]["fields"] == {
        "order.total": ["Must be greater than or equal to 0 and less than or equal to 9007199254740991."]
    }
    assert not verify(
        "another-secret-0123456789", deliveries[0]["headers"]["OrderRelay-Signature"], deliveries[0]["body"].encode()
    )
    wait_until(
        lambda: db.execute("SELECT count(*) AS n FROM notifications WHERE status = 'delivered'").fetchone()["n"] == 3,
        10,
    )
    assert len(sandbox.admin("receiver/received")) == 3  # once each


def test_a_failing_receiver_gets_the_same_event_id_until_it_answers(stack, db, sandbox):
    _, app = stack
    sandbox.script("receiver", script=[500, 503, "drop"])
    submit_hooked(app, sandbox, "n-retry")
    (delivery,) = received(sandbox, 1)
    attempts = db.execute("SELECT http_status, error FROM notification_attempts ORDER BY id").fetchall()
    assert [a["http_status"] for a in attempts] == [500, 503, None, 200]
    assert sandbox.orders("receiver")["create_requests"] == 4
    assert delivery["json"]["status"] == Status.PLACED
    event_ids = {str(row["event_id"]) for row in db.execute("SELECT event_id FROM notifications")}
    assert event_ids == {delivery["json"]["event_id"]}


def test_a_celery_task_target_gets_the_same_body(stack, db, sandbox):
    env, app = stack
    broker = redis.Redis.from_url(env["ORDERRELAY_BROKER_URL"])
    submit(
        app,
        provider="extend",
        order=sample_order("n-task"),
        idempotency_key="n-task",
        notify={"task": "checkout.order_outcome", "queue": "checkout"},
    )
    raw = wait_until(lambda: broker.lpop("checkout"), 30, message="the checkout task message")
    message = json.loads(raw)
    assert message["headers"]["task"] == "checkout.order_outcome"
    _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    body = kwargs["notification"]
    stored = db.execute("SELECT body FROM notifications").fetchone()["body"]
    assert body == json.loads(json.dumps(stored))
    assert (body["status"], body["idempotency_key"]) == (Status.PLACED, "n-task")


def test_notifications_and_redeliver_from_the_cli(stack, db, sandbox):
    import subprocess
    import sys

    env, app = stack
    submit_hooked(app, sandbox, "n-cli")
    received(sandbox, 1)
    order_id = str(db.execute("SELECT id FROM orders WHERE idempotency_key = 'n-cli'").fetchone()["id"])

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "orderrelay.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    shown = json.loads(cli("notifications", order_id, "--json"))
    assert [(n["order_status"], n["status"]) for n in shown] == [(Status.PLACED, "delivered")]
    cli("redeliver", order_id)
    second = received(sandbox, 2)
    assert second[1]["json"]["event_id"] == second[0]["json"]["event_id"]  # the same event: deduplicate on it


def test_a_redirect_is_not_followed(stack, db, sandbox):
    _, app = stack
    inside = f"{sandbox.url}/_receiver/internal-only"
    sandbox.script("receiver", script=[{"status": 307, "location": inside}, {"status": 302, "location": inside}])
    submit_hooked(app, sandbox, "n-redirect")
    deliveries = received(sandbox, 1)  # the third try, once the receiver answers 200
    assert [d["path"] for d in deliveries] == ["/_receiver/checkout"]  # never the redirect's target
    attempts = db.execute("SELECT http_status, error FROM notification_attempts ORDER BY id").fetchall()
    assert [(a["http_status"], a["error"]) for a in attempts[:2]] == [
        (307, "HTTP 307 (a redirect: not followed)"),
        (302, "HTTP 302 (a redirect: not followed)"),
    ]


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest", "http://0x7f000002:6379/", "http://[::1]:5555/"])
def test_a_job_whose_webhook_points_inside_is_rejected_by_the_worker(url, stack, db, sandbox):
    _, app = stack
    key = f"n-inside-{abs(hash(url))}"
    submit(app, provider="extend", order=sample_order(key), idempotency_key=key, notify={"url": url})
    row = wait_until(lambda: db.execute("SELECT * FROM orders WHERE idempotency_key = %s", [key]).fetchone(), 30)
    assert row["status"] == Status.REJECTED
    assert "public internet only" in row["errors"]["notify.url"][0]
    assert db.execute("SELECT count(*) AS n FROM notifications").fetchone()["n"] == 0  # nothing posted inside


def test_a_stored_target_that_points_inside_is_refused_at_delivery_not_posted(stack, db, sandbox):
    # A target taken in before the deployment's rules changed (or under other rules): checked again when used.
    _, app = stack
    from orderrelay.store import notifications as notes
    from orderrelay.store import orders as store

    port = sandbox.url.rsplit(":", 1)[1]
    with db.transaction():
        row = store.insert_order(
            db,
            provider="extend",
            status=Status.PLACED,
            request={},
            request_hash="h",
            idempotency_key="n-stored",
            message_id=None,
            due_at=None,
            expected_at=None,
            reason="placed elsewhere",
            notify={"url": f"http://127.0.0.2:{port}/_receiver/checkout"},  # loopback, not the admitted 127.0.0.1
        )
        note = notes.add(db, row["id"], deadline=3600)
    app.send_task("notifications.deliver", args=[note], queue="notifications")
    wait_until(
        lambda: db.execute("SELECT status FROM notifications WHERE id = %s", [note]).fetchone()["status"] == "expired",
        30,
        message="the delivery refused",
    )
    (attempt,) = db.execute("SELECT error FROM notification_attempts WHERE notification_id = %s", [note]).fetchall()
    assert attempt["error"] == "refused: 127.0.0.2 is not an address on the public internet"
    assert sandbox.admin("receiver/received") == []
