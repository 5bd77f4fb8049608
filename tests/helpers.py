"""Helpers shared by the tests: schema mutations, and valid orders for every provider from the sandbox."""

from __future__ import annotations

import copy

import pytest
from marshmallow import Schema, ValidationError

from orderrelay.schemas.fields import flatten_errors

DELETE = object()


def mutated(order: dict, path: str, value) -> dict:
    """A copy of ``order`` with the field at a dotted path set to ``value`` (or deleted with DELETE)."""
    order = copy.deepcopy(order)
    *parents, last = path.split(".")
    node = order
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key = int(last) if last.isdigit() else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return order


def errors_of(schema: type[Schema], order: dict) -> dict[str, list[str]]:
    """The field errors loading ``order`` gives, by path; fails the test if it loads."""
    with pytest.raises(ValidationError) as info:
        schema().load(order)
    return flatten_errors(info.value.messages)


def case_ids(cases) -> list[str]:
    return [f"{c[0]}={c[1]!r:.24}" for c in cases]


# The field of each sandbox provider's own record that holds the reference orderrelay records.
REF_FIELD = {
    "extend": "id",
    "chaiz": "orderId",
    "adobe_vip": "orderId",
    "battleface": "order_number",
    "webroot": "VendorOrderCode",
}


def provider_order(sandbox, provider: str) -> dict:
    """A valid order for ``provider``, with the plan, customer, offer, quote and cart ids it needs made through
    the sandbox's admin API."""
    import uuid

    from orderrelay.sandbox.samples import adobe_order, battleface_order, chaiz_order, extend_order, webroot_order

    if provider == "extend":
        return extend_order(f"t-{uuid.uuid4().hex[:10]}")
    if provider == "chaiz":
        plan = sandbox.admin("chaiz/plans", {})
        return chaiz_order(plan["searchResultPlanId"], plan["addons"])
    if provider == "battleface":
        sandbox.admin("battleface/products", {"program_id": 10, "state": "OH"})
        return battleface_order(sandbox.admin("battleface/quotes", {"premium": 20})["quote_id"])
    if provider == "webroot":
        return webroot_order(sandbox.admin("webroot/carts", {})["VendorOrderCode"])
    customer, offer = sandbox.admin("adobe_vip/customers", {}), sandbox.admin("adobe_vip/offers", {})
    return adobe_order(customer["customerId"], offer["offerId"])
