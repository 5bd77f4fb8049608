"""Hostile input: what no job may carry is a field error by path; patterns are the seeds', whole and linear-time.

Each cell is a job a producer could send; the checks are on the errors it gets, never on a time. The property
tests compare each RE2 pattern with the seed's own pattern run by Python's ``re`` as a whole match on the same
generated strings, so the move to RE2 loosens nothing (and tightens only ``$`` letting a trailing newline by).
"""

from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from orderrelay.core.envelope import validate_job
from orderrelay.foundation.errors import JobInvalid
from orderrelay.foundation.vault import Vault
from orderrelay.providers import REGISTRY
from orderrelay.sandbox.samples import chaiz_order, extend_order
from orderrelay.schemas import chaiz
from orderrelay.schemas.fields import WHITESPACE
from orderrelay.schemas.hostile import MAX_DEPTH, clean_text, problems, redact_text, storable
from tests.helpers import errors_of, mutated

VAULT = Vault([Fernet.generate_key().decode()])


def errors(job) -> dict[str, list[str]]:
    with pytest.raises(JobInvalid) as info:
        validate_job(job, enabled=frozenset(REGISTRY), vault=VAULT)
    return info.value.errors


def deep(levels: int):
    value: object = "x"
    for _ in range(levels):
        value = {"n": value}
    return value


EXTEND = {"provider": "extend", "order": extend_order("t-hostile")}

# job -> (the field path, the message it gets)
CELLS = [
    ({**EXTEND, "order": {**EXTEND["order"], "analytics": {"utm": "\ud800"}}}, "order.analytics.utm", "surrogate"),
    ({**EXTEND, "order": {**EXTEND["order"], "analytics": {"a\x00b": 1}}}, "order.analytics.a\ufffdb", "NUL"),
    ({**EXTEND, "order": {**EXTEND["order"], "analytics": {"\ud83d": 1}}}, "order.analytics.\ufffd", "surrogate"),
    ({**EXTEND, "order": {**EXTEND["order"], "analytics": deep(900)}}, "order.analytics" + ".n" * 30, "deeper"),
    ({**EXTEND, "order": {**EXTEND["order"], "analytics": {"n": 10**40}}}, "order.analytics.n", "Integers beyond"),
    ({**EXTEND, "order": {**EXTEND["order"], "analytics": {"n": -(2**63) - 1}}}, "order.analytics.n", "beyond"),
    ({**EXTEND, "order": {**EXTEND["order"], "analytics": {"s": "x" * 10_001}}}, "order.analytics.s", "Longer"),
    ({**EXTEND, "order": {**EXTEND["order"], "analytics": {"k" * 201: 1}}}, "order.analytics." + "k" * 201, "Keys"),
    ({**EXTEND, "order": {**EXTEND["order"], "analytics": {"f": float("nan")}}}, "order.analytics.f", "NaN"),
    ({**EXTEND, "order": {**EXTEND["order"], "analytics": {"x": list(range(10_001))}}}, "order.analytics.x", "More"),
    ({**EXTEND, "idempotency_key": "key-\udc00"}, "idempotency_key", "surrogate"),
    ({**EXTEND, "order": {**EXTEND["order"], "storeId": "evil\x00store"}}, "order.storeId", "NUL"),
    ({**EXTEND, "order": {**EXTEND["order"], "analytics": {"o": object()}}}, "order.analytics.o", "Not a JSON value"),
]


@pytest.mark.parametrize(("job", "path", "says"), CELLS)
def test_what_no_job_may_carry_is_a_field_error_by_its_path(job, path, says):
    found = errors(job)
    assert path in found, found
    assert any(says in message for message in found[path]), found[path]


def test_the_schemas_errors_come_with_the_values_no_schema_could_store():
    order = {**EXTEND["order"], "storeId": "evil\x00store", "total": -1, "analytics": {"utm": "\ud800"}}
    found = errors({**EXTEND, "order": order})
    assert {"order.storeId", "order.total", "order.analytics.utm"} <= set(found)


def test_depth_is_refused_before_any_schema_and_without_recursion_trouble():
    found = errors({**EXTEND, "order": deep(50_000)})  # far past Python's own recursion limit
    assert list(found) == ["order" + ".n" * (MAX_DEPTH - 1)]


def test_problems_stops_at_a_bound_number_of_findings():
    assert len(problems({f"k{i}": "\x00" for i in range(5_000)})) == 50


def test_storable_cleans_keys_and_values_redacts_card_fields_and_caps_depth():
    kept = storable({"a\x00": "b\ud800c", "cvc": "123", "n": 10**40, "f": float("inf"), "deep": deep(100)})
    assert kept["a\ufffd"] == "b\ufffdc"
    assert kept["cvc"] == "[redacted]"
    assert kept["n"] == "[an integer of 133 bits]"
    assert kept["f"] == "inf"
    assert "nested deeper than" in str(kept["deep"])
    assert clean_text("ok \U0001f642") == "ok \U0001f642"  # a real astral character is kept whole


def test_error_texts_are_kept_without_card_numbers_or_e_mail_addresses():
    text = "ERROR: 4111 1111-1111 1111 for ada@example.com\nCONTEXT: JSON data, line 1: {...}"
    assert redact_text(text) == "ERROR: ***************1111 for [e-mail]"
    assert redact_text("DETAIL: Key (email)=(ada@example.com) already exists.") == "DETAIL: [left out]"


# The seed's patterns as the seed wrote them (ECMA-262's \s spelt out), run by Python's re as whole matches.
ECMA_S = f"[{WHITESPACE}]"
SEED = {
    "address": (chaiz.ADDRESS, r"(?=.*[a-zA-Z])(?!.*@).*"),
    "city": (
        chaiz.CITY,
        r"[A-Za-z\u00C0-\u024F'.\-]+(?:[\s\-][A-Za-z\u00C0-\u024F'.\-]+)*".replace(r"\s", ECMA_S[1:-1]),
    ),
    "email": (chaiz.EMAIL, r"[^\s@]+@[^\s@]+\.[^\s@]+".replace(r"\s", ECMA_S[1:-1])),
    "name": (chaiz.NAME, r"[a-zA-Z' .-]+"),
}
ALPHABET = st.text(st.sampled_from("aZé-'. @\n\t\u00a0\u2028x1."), max_size=14)


@pytest.mark.parametrize("name", list(SEED))
@settings(max_examples=400, deadline=None)
@given(value=ALPHABET)
def test_each_re2_pattern_accepts_exactly_what_the_seeds_pattern_accepts_whole(name, value):
    ours, seeds = SEED[name]
    import re2

    assert (re2.fullmatch(ours, value) is not None) == (re.fullmatch(seeds, value) is not None)


CHAIZ = chaiz_order(100_001)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("userDetails.lastName", "Gonzalez\n"),  # re.match with $ let these by
        ("payment.cvc", "123\n"),
        ("userDetails.zip", "43004\n"),
        ("payment.cvc", "\u0661\u0662\u0663"),  # Arabic-Indic digits: \d, not digits to a card network
        ("userDetails.zip", "\u0664\u0663\u0660\u0660\u0664"),  # and no Rust panic from the ZIP data
        ("payment.accountNumber", "\u0664" * 16),
        ("payment.creditCardExpirationDateString", "12/\u0662\u0660\u0663\u0660"),
        ("userDetails.phoneNumber", "617555010\u0660"),
        ("userDetails.city", "a" + "-a" * 27 + "1"),  # exponential backtracking on the seed's pattern in re
        ("userDetails.city", "a" + "-a" * 5000 + "1"),
        ("userDetails.email", "a" * 32_000 + "@"),
    ],
)
def test_chaiz_refuses_what_its_seed_forbids(path, value):
    assert path in errors_of(chaiz.OrderSchema, mutated(CHAIZ, path, value))


def test_chaiz_still_takes_what_its_seed_allows():
    for path, value in (
        ("userDetails.city", "São Paulo"),
        ("userDetails.city", "Winston-Salem"),
        ("userDetails.city", "St. Mary's"),
        ("userDetails.lastName", "O'Neil-Smith Jr."),
        ("userDetails.address", "12 Analytical St"),
        ("userDetails.email", "ada.lovelace+orders@example.co.uk"),
        ("payment.cvc", "12345"),
    ):
        chaiz.OrderSchema().load(mutated(CHAIZ, path, value))


def test_a_date_or_uuid_in_another_script_is_not_a_date_or_uuid():
    from orderrelay.sandbox.samples import battleface_order

    order = battleface_order("q1", applicant={"dob": "\u0661\u0669\u0669\u0667-01-05"})
    assert errors({"provider": "battleface", "order": order})["order.applicant.dob"] == ["Not a valid date."]
    later = {**EXTEND, "not_before": "\u0662\u0660\u0662\u0667-01-01T00:00Z"}
    assert errors(later)["not_before"] == ["Not a valid datetime."]
    uuids = battleface_order("q1", products={"uuids": ["\u0661" * 32]})
    assert "order.products.uuids.0" in errors({"provider": "battleface", "order": uuids})
