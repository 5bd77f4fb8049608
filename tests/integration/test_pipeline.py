"""The pipeline's plain functions against a real PostgreSQL and the sandbox over real HTTP."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from orderrelay.core import pipeline
from orderrelay.foundation.constants import Status
from orderrelay.sandbox.samples import extend_order as sample_order
from orderrelay.store import orders as store

pytestmark = pytest.mark.integration


def job(**overrides) -> dict:
    return {"provider": "extend", "order": sample_order(f"t-{uuid.uuid4().hex[:8]}"), **overrides}


def order(db, order_id):
    return store.get_order(db, order_id)


def place_until_settled(runtime, order_id, limit: int = 10):
    """Play the role of the worker: place again each time the order is due, until it settles."""
    for _ in range(limit):
        step = pipeline.place(runtime, order_id)
        if step.status not in (Status.RETRYING, "unclaimed"):
            return step
        time.sleep((step.countdown or 0.05) + 0.01)
    pytest.fail("the order did not settle")


def test_given_a_valid_job_when_placed_then_one_order_one_attempt_one_sandbox_order(runtime, db, sandbox):
    step = pipeline.intake(runtime, job(idempotency_key="k-1"), message_id="m-1")
    assert step.place_now
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    placed = order(db, step.order_id)
    made = sandbox.orders()["orders"]
    assert placed["status"] == Status.PLACED
    assert len(placed["attempts"]) == 1
    assert placed["attempts"][0]["idempotency_key"] == str(placed["provider_key"])
    assert placed["provider_ref"] == made[0]["id"]
    assert len(made) == 1
    assert [e["to_status"] for e in placed["events"]] == ["queued", "placing", "placed"]


def test_given_a_placed_order_when_the_same_key_comes_again_then_no_second_order(runtime, db, sandbox):
    the_job = job(idempotency_key="k-2")
    first = pipeline.intake(runtime, the_job, message_id="m-a")
    pipeline.place(runtime, first.order_id)
    again = pipeline.intake(runtime, the_job, message_id="m-b")
    assert again.order_id == first.order_id
    assert not again.place_now
    assert pipeline.place(runtime, first.order_id).status == "unclaimed"
    assert sandbox.orders()["count"] == 1
    assert db.execute("SELECT count(*) AS n FROM orders").fetchone()["n"] == 1


def test_given_an_invalid_job_then_a_rejected_order_with_field_errors_and_no_call(runtime, db, sandbox):
    bad = job()
    bad["order"]["lineItems"][0]["plan"]["purchasePrice"] = 19.99
    bad["order"]["storeId"] = "evil\x00store"
    step = pipeline.intake(runtime, bad, message_id="m-bad")
    rejected = order(db, step.order_id)
    assert rejected["status"] == Status.REJECTED
    assert rejected["errors"]["order.lineItems.0.plan.purchasePrice"] == ["Not a valid integer."]
    assert "order.storeId" in rejected["errors"]
    assert rejected["request"]["order"]["storeId"] == "evil\ufffdstore"
    assert sandbox.orders()["create_requests"] == 0


def test_given_hostile_garbage_then_it_is_recorded_as_rejected(runtime, db, sandbox):
    nan_order = sample_order("t-nan", analytics={"score": float("nan"), "note": "\x00"})
    for garbage in (
        {"provider": ["x"], "order": "DROP TABLE orders;"},
        {},
        {"provider": "extend" * 1000},
        {"provider": "extend", "order": nan_order, "idempotency_key": "k\x00"},
    ):
        step = pipeline.intake(runtime, garbage, message_id=str(uuid.uuid4()))
        assert order(db, step.order_id)["status"] == Status.REJECTED


def test_given_503_then_503_then_the_order_is_placed_once_with_the_same_key(runtime, db, sandbox):
    sandbox.script(script=[503, {"status": 429, "retry_after": 0.2}, 200])
    step = pipeline.intake(runtime, job(), message_id="m-r")
    assert place_until_settled(runtime, step.order_id).status == Status.PLACED
    placed = order(db, step.order_id)
    assert [a["outcome"] for a in placed["attempts"]] == ["retryable", "retryable", "placed"]
    assert [a["http_status"] for a in placed["attempts"]] == [503, 429, 201]
    assert len({a["idempotency_key"] for a in placed["attempts"]}) == 1
    assert sandbox.orders()["count"] == 1


def test_given_retry_after_then_the_retry_is_not_due_before_it(runtime, db, sandbox):
    sandbox.script(script=[{"status": 429, "retry_after": 30}])
    step = pipeline.intake(runtime, job(), message_id="m-ra")
    before = datetime.now(UTC)
    assert pipeline.place(runtime, step.order_id).status == Status.RETRYING
    assert order(db, step.order_id)["due_at"] >= before + timedelta(seconds=29)
    assert pipeline.place(runtime, step.order_id).status == "unclaimed"  # an early message does nothing


def test_given_a_dropped_answer_after_create_then_reconciled_by_lookup_not_resent(runtime, db, sandbox):
    sandbox.script(script=["drop_after_create"])
    step = pipeline.intake(runtime, job(), message_id="m-d")
    assert pipeline.place(runtime, step.order_id).status == Status.RETRYING
    assert place_until_settled(runtime, step.order_id).status == Status.PLACED
    placed = order(db, step.order_id)
    assert [a["outcome"] for a in placed["attempts"]] == ["in_doubt", "placed"]
    made = sandbox.orders()
    assert made["count"] == 1
    assert made["create_requests"] == 1  # the second attempt found it by lookup and sent nothing
    assert placed["provider_ref"] == made["orders"][0]["id"]


def test_given_a_stored_500_then_the_key_replays_it_and_the_order_ends_in_doubt_not_failed(runtime, db, sandbox):
    # A 500 may follow a made order: every resend is looked up first, and when the attempts run out orderrelay
    # cannot say Extend holds nothing, so it says in_doubt ("failed" would invite the checkout to order again).
    sandbox.script(script=[{"status": 500, "stored": True}])
    step = pipeline.intake(runtime, job(), message_id="m-500")
    assert place_until_settled(runtime, step.order_id).status == Status.IN_DOUBT
    in_doubt = order(db, step.order_id)
    assert len(in_doubt["attempts"]) == runtime.settings.max_attempts
    assert [a["outcome"] for a in in_doubt["attempts"]] == ["in_doubt"] * runtime.settings.max_attempts
    assert in_doubt["last_error"]["status"] == 500
    assert sandbox.orders()["count"] == 0


def test_given_an_expired_token_then_a_fresh_one_is_fetched_and_the_order_placed(runtime, db, sandbox):
    pipeline.place(runtime, pipeline.intake(runtime, job(), message_id="m-t1").order_id)  # caches a token
    sandbox.admin("extend/tokens", {"expire": True})
    step = pipeline.intake(runtime, job(), message_id="m-t2")
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    assert sandbox.orders()["count"] == 2


def test_given_a_scripted_404_then_the_order_fails_at_once(runtime, db, sandbox):
    sandbox.script(script=[404])
    step = pipeline.intake(runtime, job(), message_id="m-404")
    assert pipeline.place(runtime, step.order_id).status == Status.FAILED
    assert len(order(db, step.order_id)["attempts"]) == 1


def test_given_a_wait_then_it_waits_and_the_forwarded_order_has_no_delay(runtime, db, sandbox):
    step = pipeline.intake(runtime, job(order=sample_order("t-wait", transactionDelay=0.5 / 86400)), message_id="m-w")
    assert step.status == Status.WAITING
    assert 0 < step.countdown <= 0.5
    assert pipeline.place(runtime, step.order_id).status == "unclaimed"  # too early
    time.sleep(0.6)
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    assert "transactionDelay" not in sandbox.orders()["orders"][0]


def test_given_a_long_wait_then_no_message_and_the_sweep_sends_it_when_due(runtime, db, sandbox):
    step = pipeline.intake(runtime, job(order=sample_order("t-long", transactionDelay=1)), message_id="m-l")
    assert (step.status, step.countdown) == (Status.WAITING, None)
    assert pipeline.sweep(runtime) == []
    db.execute("UPDATE orders SET due_at = now() - interval '1 second' WHERE id = %s", [step.order_id])
    assert pipeline.sweep(runtime) == [(step.order_id, "extend")]


def test_given_a_worker_lost_mid_call_then_the_sweep_requeues_it_and_the_same_key_is_reused(runtime, db, sandbox):
    step = pipeline.intake(runtime, job(), message_id="m-lost")
    claim = store.claim(db, step.order_id, lease=0.01, reason="claimed")
    assert store.mark_sending(db, step.order_id, claim_token=claim["claim_token"], attempt_id=claim["attempt_id"])
    time.sleep(0.05)  # it sent, then died
    assert (step.order_id, "extend") in pipeline.sweep(runtime)
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    placed = order(db, step.order_id)
    assert [a["outcome"] for a in placed["attempts"]] == ["in_doubt", "placed"]
    assert sandbox.orders()["count"] == 1


def test_a_rejected_job_does_not_use_up_its_key(runtime, db, sandbox):
    bad = job(idempotency_key="k-fix")
    bad["order"]["total"] = -1
    rejected = pipeline.intake(runtime, bad, message_id="m-bad-1")
    fixed = pipeline.intake(runtime, job(idempotency_key="k-fix"), message_id="m-good-1")
    assert rejected.status == Status.REJECTED
    assert fixed.created
    assert fixed.order_id != rejected.order_id
    assert store.get_order(db, key="k-fix")["id"] == fixed.order_id
    assert order(db, rejected.order_id)["idempotency_key"] == "k-fix"  # kept, for looking it up


def test_a_worker_claims_a_due_order_in_the_statement_that_records_it(runtime, db, sandbox):
    the_job = job(idempotency_key="k-at-once")
    step = pipeline.intake(runtime, the_job, message_id="m-at-once", claim=True)
    assert (step.status, step.created, step.place_now) == (Status.PLACING, True, False)
    assert step.claim["attempt_count"] == 1
    recorded = order(db, step.order_id)
    assert recorded["status"] == Status.PLACING
    assert [a["number"] for a in recorded["attempts"]] == [1]
    assert pipeline.place(runtime, step.order_id).status == "unclaimed"  # already claimed: a second message waits
    again = pipeline.intake(runtime, the_job, message_id="m-at-once", claim=True)  # the message redelivered
    assert (again.order_id, again.created, again.claim, again.place_now) == (step.order_id, False, None, False)
    assert pipeline.attempt(runtime, step.claim).status == Status.PLACED
    placed = order(db, step.order_id)
    assert [(e["from_status"], e["to_status"]) for e in placed["events"]] == [
        (None, "queued"),
        ("queued", "placing"),
        ("placing", "placed"),
    ]
    assert placed["attempts"][0]["idempotency_key"] == str(placed["provider_key"])
    assert sandbox.orders()["count"] == 1


def test_a_worker_does_not_claim_an_order_that_must_wait(runtime, db, sandbox):
    step = pipeline.intake(runtime, job(order=sample_order("t-w2", transactionDelay=0.5 / 86400)), claim=True)
    assert (step.status, step.claim) == (Status.WAITING, None)
    assert order(db, step.order_id)["attempts"] == []


def test_a_claim_made_at_intake_is_recovered_by_the_sweep_when_its_worker_dies(runtime, db, sandbox):
    step = pipeline.intake(runtime, job(), message_id="m-died", claim=True)
    db.execute("UPDATE orders SET lease_until = now() - interval '1 second' WHERE id = %s", [step.order_id])
    assert (step.order_id, "extend") in pipeline.sweep(runtime)
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    # its worker died right after the claim: if the claim marked it as sending (nothing was left to wait for) it may
    # have sent, so in doubt (Extend: looked up, then sent again); if not (a token still to ask for), it sent nothing
    died = "in_doubt" if step.claim["marked"] else "retryable"
    assert [a["outcome"] for a in order(db, step.order_id)["attempts"]] == [died, "placed"]
    assert sandbox.orders()["count"] == 1
