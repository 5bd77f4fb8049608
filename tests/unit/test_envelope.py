"""The job envelope: bad input gets field-level errors, card data is redacted, waits become a due time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from orderrelay.core.envelope import MAX_ORDER_BYTES, validate_job
from orderrelay.foundation.errors import JobInvalid
from orderrelay.foundation.vault import Vault
from orderrelay.sandbox.samples import extend_order as sample_order
from orderrelay.schemas.hostile import storable, stored_job

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ENABLED = frozenset({"extend"})
VAULT = Vault([Fernet.generate_key().decode()])


def job(**overrides) -> dict:
    return {"provider": "extend", "order": sample_order("t-env"), **overrides}


def errors(value) -> dict[str, list[str]]:
    with pytest.raises(JobInvalid) as info:
        validate_job(value, enabled=ENABLED, vault=VAULT, now=NOW)
    return info.value.errors


def test_a_valid_job_is_due_now():
    valid = validate_job(job(idempotency_key="k-1"), enabled=ENABLED, vault=VAULT, now=NOW)
    assert (valid.provider, valid.idempotency_key, valid.due_at) == ("extend", "k-1", NOW)


def test_fractional_transaction_delay_becomes_the_due_time():
    valid = validate_job(job(order=sample_order("t", transactionDelay=0.5)), enabled=ENABLED, vault=VAULT, now=NOW)
    assert valid.due_at == NOW + timedelta(hours=12)


def test_not_before_and_delay_take_the_later_of_the_two():
    later = NOW + timedelta(days=2)
    valid = validate_job(
        job(order=sample_order("t", transactionDelay=1), not_before=later.isoformat()),
        enabled=ENABLED,
        vault=VAULT,
        now=NOW,
    )
    assert valid.due_at == later


def test_a_delay_beyond_any_calendar_is_refused_not_crashed():
    assert "order" in errors(job(order=sample_order("t", transactionDelay=2**53 - 1)))


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"order": {}}, "provider"),
        ({"provider": "extend"}, "order"),
        ({"provider": "acme", "order": {}}, "provider"),
        ({"provider": 7, "order": {}}, "provider"),
        ({"provider": "chaiz", "order": {}}, "provider"),  # known id, not enabled on this deployment
        ({"provider": "extend", "order": []}, "order"),
        ({"provider": "extend", "order": {}, "idempotency_key": "k" * 201}, "idempotency_key"),
        ({"provider": "extend", "order": {}, "idempotency_key": 12}, "idempotency_key"),
        ({"provider": "extend", "order": {}, "not_before": "tomorrow"}, "not_before"),
        ({"provider": "extend", "order": {}, "not_before": "2026-11-23T12:00:00"}, "not_before"),
        ({"provider": "extend", "order": {}, "colour": "red"}, "colour"),
        ({"provider": "extend", "order": {}, "_positional_arguments": 2}, "_positional_arguments"),
    ],
)
def test_envelope_errors_name_the_field(value, path):
    assert path in errors(value)


def test_order_errors_are_prefixed_with_order():
    bad = sample_order("t")
    del bad["storeId"]
    assert errors(job(order=bad)) == {"order.storeId": ["Missing data for required field."]}


def test_a_job_that_is_not_an_object_is_rejected():
    assert "_schema" in errors(["extend", {}])


def test_an_oversized_order_is_refused():
    huge = sample_order("t", analytics={f"blob{i}": "x" * 9_000 for i in range(MAX_ORDER_BYTES // 9_000 + 1)})
    assert errors(job(order=huge)) == {"order": [f"Larger than {MAX_ORDER_BYTES} bytes."]}


def test_a_string_beyond_any_bound_is_refused_by_its_path_before_any_schema():
    long = sample_order("t", analytics={"blob": "x" * 10_001})
    assert errors(job(order=long)) == {"order.analytics.blob": ["Longer than 10000 characters."]}


def test_free_form_values_postgres_cannot_store_are_refused_by_path():
    order = sample_order("t", analytics={"note": "a\x00b", "score": float("nan")}, saleOrigin={"x": [float("inf")]})
    assert errors(job(order=order)) == {
        "order.analytics.note": ["Must not contain NUL characters."],
        "order.analytics.score": ["NaN and infinity are not numbers here."],
        "order.saleOrigin.x.0": ["NaN and infinity are not numbers here."],
    }


def test_redact_masks_card_fields_at_any_depth():
    value = {"payment": {"accountNumber": "4111111111111111", "cvc": "123"}, "items": [{"cvc": "999"}], "a": 1}
    assert storable(value) == {
        "payment": {"accountNumber": "[redacted]", "cvc": "[redacted]"},
        "items": [{"cvc": "[redacted]"}],
        "a": 1,
    }


def test_stored_job_keeps_no_nul_and_cuts_huge_jobs():
    assert stored_job({"x": "a\x00b"}) == {"x": "a\ufffdb"}
    assert stored_job({"x": "y" * 10_001})["x"].endswith("y... [10001 characters, cut]")
    kept = stored_job({f"x{i}": "y" * 9_000 for i in range(8)})
    assert kept["_truncated"] is True and len(kept["_head"]) == 2000
    assert stored_job("just a string") == {"_job": "just a string"}
    assert stored_job({"n": float("nan")}) == {"n": "nan"}
