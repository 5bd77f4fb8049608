"""Adobe VIP Marketplace's create-order body (seed 002, limits from PROVIDERS.md), plus ``customerId``.

``customerId`` is routing: it goes in the path, not the body. 1-499 line items with unique
``extLineItemNumber`` 0-999999, ``quantity`` at least 1, ``discountCode`` at most 40 characters,
``externalReferenceId`` at most 35; ``referenceOrderId`` only (and always) for RETURN orders; the currency
at the order level or on the line items, never both (Adobe's code 2140).
"""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from orderrelay.schemas.fields import CurrencyCode, Pattern, Strict, Text

ORDER_TYPES = ("NEW", "RETURN", "PREVIEW", "PREVIEW_RENEWAL", "RENEWAL")
# Seed 002's order types that make no order (a price quote): orderrelay places orders, so it refuses them.
PREVIEWS = ("PREVIEW", "PREVIEW_RENEWAL")
ROUTING_FIELDS = ("customerId",)


class LineItemSchema(Strict):
    extLineItemNumber = fields.Integer(strict=True, required=True, validate=validate.Range(0, 999_999))
    offerId = Text(max_length=40, required=True)
    quantity = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=100_000))
    currencyCode = CurrencyCode()
    deploymentId = Text(max_length=40)
    discountCode = Text(max_length=40)


class OrderSchema(Strict):
    customerId = Text(
        max_length=40,
        required=True,
        validate=[Pattern("[A-Za-z0-9_-]+", "Letters, digits, - and _ only.")],
    )
    externalReferenceId = Text(max_length=35)
    currencyCode = CurrencyCode()
    orderType = fields.String(required=True, validate=validate.OneOf(ORDER_TYPES))
    referenceOrderId = fields.String(validate=validate.Length(max=40))
    lineItems = fields.List(
        fields.Nested(LineItemSchema),
        required=True,
        validate=validate.Length(1, 499, error="Must have from {min} to {max} line items."),
    )

    @validates_schema
    def rules(self, data, **kwargs):
        """referenceOrderId for returns only; currency at one level; unique line numbers."""
        errors: dict = {}
        reference = data.get("referenceOrderId") or None
        if data.get("orderType") == "RETURN" and not reference:
            errors["referenceOrderId"] = ["Required for a RETURN order."]
        elif data.get("orderType") != "RETURN" and reference:
            errors["referenceOrderId"] = ["Only a RETURN order refers to another order."]
        if data.get("orderType") in PREVIEWS:
            errors["orderType"] = [
                f"A {data['orderType']} makes no order (Adobe only prices it); orderrelay places orders: ask Adobe for "
                "previews directly."
            ]
        lines = data.get("lineItems", [])
        if "currencyCode" in data and any("currencyCode" in line for line in lines):
            errors["currencyCode"] = ["Give the currency on the line items or on the order, not both."]
        seen: set[int] = set()
        for index, line in enumerate(lines):
            number = line["extLineItemNumber"]
            if number in seen:
                errors.setdefault("lineItems", {})[index] = {"extLineItemNumber": ["Duplicate extLineItemNumber."]}
            seen.add(number)
        if errors:
            raise ValidationError(errors)
