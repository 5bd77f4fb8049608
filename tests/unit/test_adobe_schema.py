"""Every constraint of Adobe VIP Marketplace's create-order body (seed 002, PROVIDERS.md) fails with its path."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from orderrelay.sandbox.samples import adobe_order
from orderrelay.schemas.adobe_vip import OrderSchema
from tests.helpers import DELETE, case_ids, errors_of, mutated


def line(number: int, **extra) -> dict:
    return {"extLineItemNumber": number, "offerId": "65304470CA01A12", "quantity": 1, **extra}


def test_the_sample_order_is_valid():
    order = adobe_order("9876543210", "65304470CA01A12")
    assert OrderSchema().load(order) == order


def test_a_return_refers_to_its_order_and_499_lines_are_allowed():
    order = adobe_order("c1", "o", orderType="RETURN", referenceOrderId="0123456789")
    order["lineItems"] = [line(i) for i in range(499)]
    assert len(OrderSchema().load(order)["lineItems"]) == 499


def test_an_empty_reference_on_a_new_order_counts_as_none():
    assert OrderSchema().load(adobe_order("c1", "o", referenceOrderId=""))["referenceOrderId"] == ""


@pytest.mark.parametrize("kind", ["PREVIEW", "PREVIEW_RENEWAL"])
def test_a_preview_makes_no_order_and_is_refused_with_its_field(kind):
    with pytest.raises(ValidationError) as info:
        OrderSchema().load(adobe_order("c1", "o", orderType=kind))
    assert "makes no order" in " ".join(info.value.messages["orderType"])


CASES = [
    ("customerId", DELETE, "customerId"),
    ("customerId", "98/76", "customerId"),
    ("orderType", DELETE, "orderType"),
    ("orderType", "BUY", "orderType"),
    ("lineItems", DELETE, "lineItems"),
    ("lineItems", [], "lineItems"),
    ("lineItems", [line(i) for i in range(500)], "lineItems"),
    ("lineItems.0.extLineItemNumber", DELETE, "lineItems.0.extLineItemNumber"),
    ("lineItems.0.extLineItemNumber", -1, "lineItems.0.extLineItemNumber"),
    ("lineItems.0.extLineItemNumber", 1_000_000, "lineItems.0.extLineItemNumber"),
    ("lineItems.0.extLineItemNumber", "4", "lineItems.0.extLineItemNumber"),
    ("lineItems.0.offerId", DELETE, "lineItems.0.offerId"),
    ("lineItems.0.quantity", DELETE, "lineItems.0.quantity"),
    ("lineItems.0.quantity", 0, "lineItems.0.quantity"),
    ("lineItems.0.currencyCode", "usd", "lineItems.0.currencyCode"),
    ("lineItems.0.discountCode", "D" * 41, "lineItems.0.discountCode"),
    ("lineItems.0.deploymentId", "", "lineItems.0.deploymentId"),
    ("lineItems.0.colour", "red", "lineItems.0.colour"),
    ("externalReferenceId", "E" * 36, "externalReferenceId"),
    ("currencyCode", "USD", "currencyCode"),  # the line item has one too: error 2140
    ("referenceOrderId", "0123456789", "referenceOrderId"),  # only for RETURN
    ("orderType", "RETURN", "referenceOrderId"),  # RETURN needs one
    ("lineItems", [line(4), line(4)], "lineItems.1.extLineItemNumber"),
    ("status", "1002", "status"),  # read-only fields are refused
]


@pytest.mark.parametrize(("path", "value", "error_path"), CASES, ids=case_ids(CASES))
def test_each_constraint_fails_with_its_field_path(path, value, error_path):
    errors = errors_of(OrderSchema, mutated(adobe_order("9876543210", "65304470CA01A12"), path, value))
    assert error_path in errors, errors
