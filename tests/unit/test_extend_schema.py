"""Every constraint of Extend's create-order body (seed 001) has a failing case with its field path."""

from __future__ import annotations

import copy

import pytest

from orderrelay.sandbox.samples import extend_order as sample_order
from orderrelay.schemas.extend import OrderSchema
from tests.helpers import DELETE, case_ids, mutated
from tests.helpers import errors_of as schema_errors


def load(order: dict) -> dict:
    return OrderSchema().load(order)


def errors_of(order: dict) -> dict[str, list[str]]:
    return schema_errors(OrderSchema, order)


def test_the_sample_order_is_valid():
    order = sample_order("t-1")
    assert load(order) == order


def test_every_line_item_kind_is_accepted():
    order = sample_order("t-kinds")
    order["lineItems"] = [
        {
            "lineItemTransactionId": "c",
            "product": {"id": "p", "purchasePrice": 100},
            "plan": {"id": "x", "purchasePrice": 9},
        },
        {"lineItemTransactionId": "l", "product": {"id": "p", "purchasePrice": 100}},
        {"lineItemTransactionId": "n", "product": {"id": "NW-1", "purchasePrice": 100}, "status": "unfulfilled"},
        {"lineItemTransactionId": "s", "quoteId": "q-1", "shipmentInfo": {"trackingId": "1Z"}},
    ]
    assert len(load(order)["lineItems"]) == 4


def test_fractional_transaction_delay_is_kept():
    assert load(sample_order("t", transactionDelay=0.5))["transactionDelay"] == 0.5


def test_money_accepts_the_largest_safe_integer():
    assert load(sample_order("t", total=2**53 - 1))["total"] == 2**53 - 1


CASES = [
    # required fields
    ("currency", DELETE, "currency"),
    ("storeId", DELETE, "storeId"),
    ("transactionId", DELETE, "transactionId"),
    ("customer", DELETE, "customer"),
    ("lineItems", DELETE, "lineItems"),
    ("customer.email", DELETE, "customer.email"),
    ("customer.name", DELETE, "customer.name"),
    ("lineItems.0.lineItemTransactionId", DELETE, "lineItems.0.lineItemTransactionId"),
    ("lineItems.0.product.id", DELETE, "lineItems.0.product.id"),
    ("lineItems.0.plan.id", DELETE, "lineItems.0.plan.id"),
    # enums and codes
    ("currency", "usd", "currency"),
    ("currency", "XXY", "currency"),
    ("status", "shipped", "status"),
    ("lineItems.0.status", "lost", "lineItems.0.status"),
    ("customer.billingAddress.countryCode", "Narnia", "customer.billingAddress.countryCode"),
    ("customer.email", "not-an-email", "customer.email"),
    # money: whole, non-negative, at most 2^53-1, a number not a string
    ("total", -1, "total"),
    ("total", 2**53, "total"),
    ("total", 19.99, "total"),
    ("total", "1999", "total"),
    ("total", True, "total"),
    ("productCostTotal", -5, "productCostTotal"),
    ("shippingCostTotal", 1.5, "shippingCostTotal"),
    ("shippingTaxCostTotal", -1, "shippingTaxCostTotal"),
    ("taxCostTotal", "0", "taxCostTotal"),
    ("lineItems.0.product.purchasePrice", -100, "lineItems.0.product.purchasePrice"),
    ("lineItems.0.product.listPrice", 499.99, "lineItems.0.product.listPrice"),
    ("lineItems.0.plan.purchasePrice", 2**53, "lineItems.0.plan.purchasePrice"),
    # 13-digit millisecond timestamps
    ("transactionDate", 1_700_000_000, "transactionDate"),
    ("transactionDate", 17_000_000_000_000, "transactionDate"),
    ("transactionDate", "1700000000000", "transactionDate"),
    ("lineItems.0.product.purchaseDate", 1_700_000_000, "lineItems.0.product.purchaseDate"),
    # transactionDelay: a number of days, not negative, not NaN, not a string
    ("transactionDelay", -0.5, "transactionDelay"),
    ("transactionDelay", float("nan"), "transactionDelay"),
    ("transactionDelay", "0.5", "transactionDelay"),
    ("transactionDelay", 2.0**53, "transactionDelay"),
    # booleans are booleans
    ("isTest", "yes", "isTest"),
    ("isHistorical", 1, "isHistorical"),
    # quantity
    ("lineItems.0.quantity", 0, "lineItems.0.quantity"),
    # unknown fields are refused
    ("surprise", "x", "surprise"),
    ("lineItems.0.product.colour", "red", "lineItems.0.product.colour"),
    # lengths and hostile strings
    ("storeId", "", "storeId"),
    ("storeId", "x" * 256, "storeId"),
    ("transactionId", "abc\x00def", "transactionId"),
    ("customer.name", "Robert\x1b[2J", "customer.name"),
    # line item kinds
    ("lineItems.0.product", DELETE, "lineItems.0.product"),
    ("lineItems.1.quoteId", "q-1", "lineItems.1.shipmentInfo"),
]


@pytest.mark.parametrize(("path", "value", "error_path"), CASES, ids=case_ids(CASES))
def test_each_constraint_fails_with_its_field_path(path, value, error_path):
    errors = errors_of(mutated(sample_order("t-bad"), path, value))
    assert error_path in errors, errors


def test_at_most_500_line_items():
    order = sample_order("t-many")
    line = order["lineItems"][1]
    order["lineItems"] = [{**copy.deepcopy(line), "lineItemTransactionId": f"l-{i}"} for i in range(501)]
    assert "lineItems" in errors_of(order)
    order["lineItems"] = order["lineItems"][:500]
    assert len(load(order)["lineItems"]) == 500


def test_at_least_one_line_item():
    assert "lineItems" in errors_of(sample_order("t", lineItems=[]))


def test_line_item_ids_are_unique():
    order = sample_order("t-dup")
    order["lineItems"][1]["lineItemTransactionId"] = order["lineItems"][0]["lineItemTransactionId"]
    assert "lineItems.1.lineItemTransactionId" in errors_of(order)


def test_shipping_protection_needs_a_quote_id():
    order = sample_order("t-ship")
    order["lineItems"] = [{"lineItemTransactionId": "s", "shipmentInfo": {"trackingId": "1Z"}}]
    assert "lineItems.0.quoteId" in errors_of(order)


def test_shipping_protection_carries_no_product():
    order = sample_order("t-ship")
    order["lineItems"][0].update(quoteId="q", shipmentInfo={"a": 1})
    assert "lineItems.0" in errors_of(order)


def test_a_plan_without_a_product_is_refused():
    order = sample_order("t-plan")
    del order["lineItems"][0]["product"]
    assert "lineItems.0.product" in errors_of(order)
