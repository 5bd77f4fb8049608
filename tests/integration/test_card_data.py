"""Key rotation re-seals stored card data; old card data is erased after the retention period."""

from __future__ import annotations

import time
import uuid

import pytest
from cryptography.fernet import Fernet, InvalidToken

from orderrelay.core import operations, pipeline
from orderrelay.foundation.constants import Status
from orderrelay.foundation.vault import Vault
from orderrelay.sandbox.samples import TEST_CARD, chaiz_order
from orderrelay.store import orders as store

pytestmark = pytest.mark.integration


def test_rotate_keys_reseals_everything_with_the_newest_key(runtime, db, sandbox):
    step = pipeline.intake(runtime, {"provider": "chaiz", "order": chaiz_order(1)}, message_id=str(uuid.uuid4()))
    old_token = store.get_order(db, step.order_id)["request"]["payment"]["accountNumber"]["$sealed"]
    newest = Fernet.generate_key().decode()
    assert operations.rotate_keys(db, Vault([newest, *runtime.settings.fernet_keys])) == 1
    sealed = store.get_order(db, step.order_id)["request"]["payment"]
    assert sealed["accountNumber"]["$sealed"] != old_token
    assert Vault([newest]).open(sealed["accountNumber"]) == TEST_CARD  # the newest key alone opens it
    assert Vault([newest]).open(sealed["cvc"]) == "123"
    with pytest.raises(InvalidToken):
        Vault(runtime.settings.fernet_keys).open(sealed["accountNumber"])


def test_card_data_of_ended_orders_is_erased_after_the_retention(runtime, db, sandbox):
    plan = sandbox.admin("chaiz/plans", {})
    step = pipeline.intake(
        runtime, {"provider": "chaiz", "order": chaiz_order(plan["searchResultPlanId"])}, message_id=str(uuid.uuid4())
    )
    waiting = pipeline.intake(
        runtime,
        {
            "provider": "chaiz",
            "order": chaiz_order(plan["searchResultPlanId"]),
            "not_before": "2099-01-01T00:00:00+00:00",
        },
        message_id=str(uuid.uuid4()),
    )
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    assert operations.erase_card_data(db, retention=3600) == 0  # not yet
    assert operations.erase_card_data(db, retention=0) == 1  # the placed one; the waiting one keeps its card
    payment = store.get_order(db, step.order_id)["request"]["payment"]
    assert payment["accountNumber"] == {"$erased": True, "last4": "1111"}
    assert "$sealed" in store.get_order(db, waiting.order_id)["request"]["payment"]["accountNumber"]


def test_erasure_selects_only_sealed_card_data_and_always_ends(runtime, db, sandbox):
    """A customer who wrote the text "$sealed" (which a text match over the order took for card data, forever)
    is not card data: erasure ends, touches only the orders that hold sealed values, and uses its index."""
    from orderrelay.store import queries
    from orderrelay.tools.scale import explain, seq_scans, shape

    plan = sandbox.admin("chaiz/plans", {})
    odd = chaiz_order(plan["searchResultPlanId"])
    odd["userDetails"]["externalId"] = "$sealed"  # free text: a customer may write anything there
    odd["device"] = '{"$sealed": "x"}'
    step = pipeline.intake(runtime, {"provider": "chaiz", "order": odd}, message_id=str(uuid.uuid4()))
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    assert operations.erase_card_data(db, retention=0) == 1  # its card number, once
    assert operations.erase_card_data(db, retention=0) == 0  # and then nothing: the run ends
    kept = store.get_order(db, step.order_id)["request"]
    assert kept["userDetails"]["externalId"] == "$sealed" and kept["payment"]["accountNumber"]["$erased"] is True
    db.execute(
        "INSERT INTO orders (id, provider_key, provider, status, request, request_hash, updated_at) "
        "SELECT gen_random_uuid(), gen_random_uuid(), 'extend', 'placed', '{\"a\": \"$sealed\"}'::jsonb, 'h', "
        "now() - interval '1 day' FROM generate_series(1, 20000)"
    )
    db.execute("ANALYZE orders")
    params = {"retention": 0, "after": uuid.UUID(int=0), "limit": 500}
    erasure = explain(db, queries.CARD_DATA_DUE_FOR_ERASURE, params)
    assert "orders_sealed_card" in shape(erasure) and seq_scans(erasure) == []


def test_a_retryable_failure_with_rounds_left_keeps_the_cvc_for_the_next_round(runtime, db, sandbox):
    plan = sandbox.admin("chaiz/plans", {})
    sandbox.script("chaiz", script=[503, 503, 503, 503, 503])
    step = pipeline.intake(
        runtime, {"provider": "chaiz", "order": chaiz_order(plan["searchResultPlanId"])}, message_id=str(uuid.uuid4())
    )
    for _ in range(6):
        if pipeline.place(runtime, step.order_id).status == Status.FAILED:
            break
        time.sleep(0.6)
    failed = store.get_order(db, step.order_id)
    assert failed["status"] == Status.FAILED and failed["last_error"]["kind"] == "retryable"
    assert "cvc" in failed["request"]["payment"]  # a scheduled round will send the card again, with its CVC
    sandbox.script("chaiz", script=[])
    assert operations.retry_failed_rounds(db, rounds=3, interval=0) == [(step.order_id, "chaiz")]
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    assert "cvc" not in store.get_order(db, step.order_id)["request"]["payment"]
