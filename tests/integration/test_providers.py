"""Chaiz and Adobe VIP through the pipeline, against a real PostgreSQL and the sandbox over real HTTP."""

from __future__ import annotations

import time
import uuid

import pytest

from orderrelay.core import pipeline
from orderrelay.foundation.constants import Status
from orderrelay.sandbox.samples import TEST_CARD, adobe_order, chaiz_order
from orderrelay.store import orders as store

pytestmark = pytest.mark.integration


@pytest.fixture
def plan(sandbox) -> dict:
    return sandbox.admin("chaiz/plans", {})


@pytest.fixture
def adobe(sandbox) -> tuple[str, str]:
    return sandbox.admin("adobe_vip/customers", {})["customerId"], sandbox.admin("adobe_vip/offers", {})["offerId"]


def submit(runtime, provider: str, order: dict, **extra):
    return pipeline.intake(runtime, {"provider": provider, "order": order, **extra}, message_id=str(uuid.uuid4()))


def everything_stored(db) -> str:
    """Every row of every table, as text: what a leak scan reads."""
    text = []
    for table in ("orders", "attempts", "order_events"):
        text += [str(row) for row in db.execute(f"SELECT * FROM {table}")]  # noqa: S608
    return "\n".join(text)


def test_chaiz_order_is_placed_and_card_data_is_sealed_and_the_cvc_erased(runtime, db, sandbox, plan):
    step = submit(runtime, "chaiz", chaiz_order(plan["searchResultPlanId"], plan["addons"][:1]))
    stored = store.get_order(db, step.order_id)["request"]
    assert stored["payment"]["accountNumber"]["last4"] == "1111"
    assert "$sealed" in stored["payment"]["cvc"]
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    placed = store.get_order(db, step.order_id)
    made = sandbox.orders("chaiz")
    assert made["count"] == 1
    assert placed["provider_ref"] == str(made["orders"][0]["orderId"])
    assert made["orders"][0]["cardLast4"] == "1111"  # the sandbox got the real number
    assert "cvc" not in placed["request"]["payment"]
    dump = everything_stored(db)
    assert TEST_CARD not in dump
    assert "'123'" not in dump


def test_chaiz_refusal_fails_at_once_with_chaizs_code(runtime, db, sandbox, plan):
    step = submit(runtime, "chaiz", chaiz_order(999_999))  # a plan id the sandbox never made
    assert pipeline.place(runtime, step.order_id).status == Status.FAILED
    failed = store.get_order(db, step.order_id)
    assert len(failed["attempts"]) == 1
    assert failed["last_error"]["code"] == "4020 PlanNotFound"
    assert failed["last_error"]["status"] == 400
    assert "cvc" not in failed["request"]["payment"]  # finally failed: the CVC goes too


def test_chaiz_partner_must_match_the_token(runtime, db, sandbox, plan):
    step = submit(runtime, "chaiz", chaiz_order(plan["searchResultPlanId"], partner="SOMEONE-ELSE"))
    assert pipeline.place(runtime, step.order_id).status == Status.FAILED
    assert store.get_order(db, step.order_id)["last_error"]["code"] == "4010 PartnerMismatch"


def test_chaiz_lost_answer_is_in_doubt_and_never_resent(runtime, db, sandbox, plan):
    sandbox.script("chaiz", script=["drop_after_create"])
    step = submit(runtime, "chaiz", chaiz_order(plan["searchResultPlanId"]))
    assert pipeline.place(runtime, step.order_id).status == Status.IN_DOUBT
    assert pipeline.place(runtime, step.order_id).status == "unclaimed"
    assert sandbox.orders("chaiz")["create_requests"] == 1
    in_doubt = store.get_order(db, step.order_id)
    assert in_doubt["attempts"][0]["outcome"] == "in_doubt"
    assert "cvc" not in in_doubt["request"]["payment"]  # nothing sends it again by itself: the CVC goes
    assert in_doubt["request"]["payment"]["accountNumber"]["last4"] == "1111"  # the sealed number stays


def test_adobe_order_is_placed_with_a_correlation_id_and_followed_until_final(runtime, db, sandbox, adobe):
    step = submit(runtime, "adobe_vip", adobe_order(*adobe))
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    placed = store.get_order(db, step.order_id)
    assert placed["provider_status"] == "1002"
    assert pipeline.follow_up(runtime) == 0  # nothing changed yet
    sandbox.admin(f"adobe_vip/orders/{placed['provider_ref']}/status", {"status": "1000"})
    assert pipeline.follow_up(runtime) == 1
    done = store.get_order(db, step.order_id)
    assert (done["status"], done["provider_status"]) == (Status.PLACED, "1000")
    assert done["events"][-1]["reason"] == "adobe_vip status 1002 -> 1000"
    assert pipeline.follow_up(runtime) == 0  # 1000 is final: not read again


def test_adobe_order_failed_after_creation_becomes_failed(runtime, db, sandbox, adobe):
    step = submit(runtime, "adobe_vip", adobe_order(*adobe))
    pipeline.place(runtime, step.order_id)
    ref = store.get_order(db, step.order_id)["provider_ref"]
    sandbox.admin(f"adobe_vip/orders/{ref}/status", {"status": "1004"})
    pipeline.follow_up(runtime)
    failed = store.get_order(db, step.order_id)
    assert (failed["status"], failed["provider_status"]) == (Status.FAILED, "1004")
    assert failed["events"][-1]["from_status"] == Status.PLACED


def test_adobe_lost_answer_is_resent_with_the_same_correlation_id(runtime, db, sandbox, adobe):
    sandbox.script("adobe_vip", script=["drop_after_create"])
    step = submit(runtime, "adobe_vip", adobe_order(*adobe))
    assert pipeline.place(runtime, step.order_id).status == Status.RETRYING
    time.sleep(0.6)
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    made = sandbox.orders("adobe_vip")
    assert made["count"] == 1
    assert made["create_requests"] == 2
    assert store.get_order(db, step.order_id)["provider_ref"] == made["orders"][0]["orderId"]


def test_adobe_refusal_keeps_adobes_code_and_is_not_retried(runtime, db, sandbox, adobe):
    step = submit(runtime, "adobe_vip", adobe_order(adobe[0], "NO-SUCH-OFFER"))
    assert pipeline.place(runtime, step.order_id).status == Status.FAILED
    failed = store.get_order(db, step.order_id)
    assert (failed["last_error"]["status"], failed["last_error"]["code"]) == (400, "2122")
    assert len(failed["attempts"]) == 1


def test_adobe_unknown_customer_is_404(runtime, db, sandbox, adobe):
    step = submit(runtime, "adobe_vip", adobe_order("0000000000", adobe[1]))
    assert pipeline.place(runtime, step.order_id).status == Status.FAILED
    assert store.get_order(db, step.order_id)["last_error"]["status"] == 404


def test_adobe_429_4118_is_retried(runtime, db, sandbox, adobe):
    sandbox.script("adobe_vip", script=[{"status": 429, "retry_after": 0.1}])
    step = submit(runtime, "adobe_vip", adobe_order(*adobe))
    assert pipeline.place(runtime, step.order_id).status == Status.RETRYING


def test_a_sealed_card_from_the_producer_is_opened_checked_and_sealed_again(runtime, db, sandbox, plan):
    from orderrelay.foundation.vault import seal_fields
    from orderrelay.providers import chaiz

    sealed = seal_fields(runtime.vault, chaiz_order(plan["searchResultPlanId"]), chaiz.CARD_FIELDS)
    step = submit(runtime, "chaiz", sealed)
    assert step.status == Status.QUEUED
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    bad = chaiz_order(plan["searchResultPlanId"])
    bad["payment"]["accountNumber"] = {"$sealed": "not-a-token"}
    rejected = store.get_order(db, submit(runtime, "chaiz", bad).order_id)
    assert rejected["errors"] == {
        "order.payment.accountNumber": ["Sealed value cannot be opened with the configured keys."]
    }
