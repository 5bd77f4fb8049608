"""The toy provider's order body."""

from __future__ import annotations

from marshmallow import fields, validate

from orderrelay.schemas.fields import Strict, Text


class OrderSchema(Strict):
    reference = Text(64, required=True)
    toy = Text(100, required=True)
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100))
