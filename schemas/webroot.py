"""Webroot Unity's create-order body, ``CreateOrderRequestServiceModel`` (seed 004): convert a cart to an order.

``VendorOrderCode`` (the cart) and ``PaymentMethod`` are required; ``PurchaseOrder`` is the only method, and
then the ``PurchaseOrder`` number is required.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from orderrelay.schemas.fields import Pattern, Text

PAYMENT_METHODS = ("PurchaseOrder",)


class OrderSchema(Schema):
    class Meta:
        unknown = RAISE

    VendorOrderCode = Text(max_length=50, required=True, validate=[Pattern("[A-Za-z0-9_-]+", "Not a cart code.")])
    PaymentMethod = fields.String(required=True, validate=validate.OneOf(PAYMENT_METHODS))
    PurchaseOrder = Text(max_length=50)

    @validates_schema
    def purchase_order_number(self, data, **kwargs):
        """A purchase order payment names its purchase order number."""
        if data.get("PaymentMethod") == "PurchaseOrder" and not data.get("PurchaseOrder"):
            raise ValidationError("Required when PaymentMethod is PurchaseOrder.", "PurchaseOrder")
