"""Every constraint of Chaiz's complete-order body (seed 000) has a failing case with its field path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orderrelay.sandbox.samples import chaiz_order
from orderrelay.schemas.chaiz import OrderSchema
from tests.helpers import DELETE, case_ids, errors_of, mutated

NOW = datetime.now(UTC)
LAST_MONTH = f"{(NOW.month - 2) % 12 + 1:02d}/{NOW.year if NOW.month > 1 else NOW.year - 1}"


def test_the_sample_order_is_valid():
    order = chaiz_order(100, [7])
    assert OrderSchema().load(order) == order


def test_this_months_expiry_is_still_valid_and_nullable_fields_take_null():
    order = mutated(chaiz_order(1), "payment.creditCardExpirationDateString", f"{NOW.month:02d}/{NOW.year}")
    for path in (
        "payment.cvc",
        "userDetails.addressApartment",
        "userDetails.phoneNumber",
        "partner",
        "device",
        "selectedAddonIds",
        "userDetails.externalId",
    ):
        order = mutated(order, path, None)
    assert OrderSchema().load(order)["payment"]["cvc"] is None


def test_state_codes_are_case_insensitive():
    assert OrderSchema().load(mutated(chaiz_order(1), "userDetails.state", "ma"))["userDetails"]["state"] == "ma"


CASES = [
    # required
    ("payment", DELETE, "payment"),
    ("searchResultPlanIds", DELETE, "searchResultPlanIds"),
    ("userDetails", DELETE, "userDetails"),
    ("payment.accountNumber", DELETE, "payment.accountNumber"),
    ("payment.creditCardExpirationDateString", DELETE, "payment.creditCardExpirationDateString"),
    ("payment.methodType", DELETE, "payment.methodType"),
    ("payment.paymentOption", DELETE, "payment.paymentOption"),
    ("userDetails.address", DELETE, "userDetails.address"),
    ("userDetails.city", DELETE, "userDetails.city"),
    ("userDetails.email", DELETE, "userDetails.email"),
    ("userDetails.firstName", DELETE, "userDetails.firstName"),
    ("userDetails.lastName", DELETE, "userDetails.lastName"),
    ("userDetails.state", DELETE, "userDetails.state"),
    ("userDetails.zip", DELETE, "userDetails.zip"),
    # card number: 13-16 digits, Luhn
    ("payment.accountNumber", "411111111111", "payment.accountNumber"),
    ("payment.accountNumber", "41111111111111111", "payment.accountNumber"),
    ("payment.accountNumber", "4111111111111112", "payment.accountNumber"),
    ("payment.accountNumber", "4111-1111-1111-11", "payment.accountNumber"),
    ("payment.accountNumber", 4111111111111111, "payment.accountNumber"),
    # expiry MM/YYYY, not in the past
    ("payment.creditCardExpirationDateString", "12/25", "payment.creditCardExpirationDateString"),
    ("payment.creditCardExpirationDateString", "13/2030", "payment.creditCardExpirationDateString"),
    ("payment.creditCardExpirationDateString", "2030-12", "payment.creditCardExpirationDateString"),
    ("payment.creditCardExpirationDateString", LAST_MONTH, "payment.creditCardExpirationDateString"),
    # enums
    ("payment.methodType", "Visa", "payment.methodType"),
    ("payment.paymentOption", "Quarter", "payment.paymentOption"),
    # cvc 3-5 digits
    ("payment.cvc", "12", "payment.cvc"),
    ("payment.cvc", "123456", "payment.cvc"),
    ("payment.cvc", "12a", "payment.cvc"),
    # plan ids
    ("searchResultPlanIds", [], "searchResultPlanIds"),
    ("searchResultPlanIds", ["100"], "searchResultPlanIds.0"),
    ("searchResultPlanIds", [1.5], "searchResultPlanIds.0"),
    ("selectedAddonIds", ["x"], "selectedAddonIds.0"),
    # address: 5-60, has letters, no @
    ("userDetails.address", "12 B", "userDetails.address"),
    ("userDetails.address", "x" * 61, "userDetails.address"),
    ("userDetails.address", "12345 67", "userDetails.address"),
    ("userDetails.address", "12 Main St @ home", "userDetails.address"),
    # city: 3-32, pattern
    ("userDetails.city", "Bo", "userDetails.city"),
    ("userDetails.city", "B" * 33, "userDetails.city"),
    ("userDetails.city", "Boston 2", "userDetails.city"),
    # email
    ("userDetails.email", "ada@example", "userDetails.email"),
    ("userDetails.email", "ada example.com", "userDetails.email"),
    # names: 2-32, letters and ' . - space
    ("userDetails.firstName", "A", "userDetails.firstName"),
    ("userDetails.firstName", "A" * 33, "userDetails.firstName"),
    ("userDetails.lastName", "Lovelace3", "userDetails.lastName"),
    ("userDetails.lastName", "Ló", "userDetails.lastName"),
    # state and ZIP
    ("userDetails.state", "ZZ", "userDetails.state"),
    ("userDetails.state", "M4", "userDetails.state"),
    ("userDetails.state", "NY", "userDetails.state"),  # 02108 is in MA
    ("userDetails.zip", "0210", "userDetails.zip"),
    ("userDetails.zip", "02108-1234", "userDetails.zip"),
    ("userDetails.zip", "00000", "userDetails.zip"),
    # optional fields' limits
    ("userDetails.addressApartment", "12345", "userDetails.addressApartment"),
    ("userDetails.phoneNumber", "617555010", "userDetails.phoneNumber"),
    ("userDetails.phoneNumber", "(617) 555-0100", "userDetails.phoneNumber"),
    # unknown fields and hostile strings
    ("payment.pin", "1234", "payment.pin"),
    ("coupon", "x", "coupon"),
    ("userDetails.externalId", "a\x00b", "userDetails.externalId"),
]


@pytest.mark.parametrize(("path", "value", "error_path"), CASES, ids=case_ids(CASES))
def test_each_constraint_fails_with_its_field_path(path, value, error_path):
    errors = errors_of(OrderSchema, mutated(chaiz_order(100), path, value))
    assert error_path in errors, errors


def test_no_error_message_repeats_the_card_number():
    errors = errors_of(OrderSchema, mutated(chaiz_order(1), "payment.accountNumber", "4111111111111112"))
    assert "4111111111111112" not in str(errors)


def test_zip_state_mismatch_says_where_the_zip_is():
    errors = errors_of(OrderSchema, mutated(chaiz_order(1), "userDetails.state", "NY"))
    assert errors["userDetails.state"] == ["ZIP code 02108 is in MA, not NY."]
