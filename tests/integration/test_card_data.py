"""Key rotation re-seals stored card data; old card data is erased after the retention period."""

from __future__ import annotations

import uuid

import pytest
from cryptography.fernet import Fernet, InvalidToken

from orderrelay import operations, pipeline
from orderrelay.constants import Status
from orderrelay.vault import Vault
from sandbox.samples import TEST_CARD, chaiz_order
from store import orders as store

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
