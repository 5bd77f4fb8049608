"""What the HTTP intake API answers, as marshmallow schemas (its OpenAPI document is generated from them)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from orderrelay.foundation.constants import ALL_STATUSES
from orderrelay.providers import known


class AttemptSchema(Schema):
    number = fields.Integer(required=True)
    idempotency_key = fields.String(allow_none=True)
    started_at = fields.DateTime(required=True)
    finished_at = fields.DateTime(allow_none=True)
    http_status = fields.Integer(allow_none=True)
    latency_ms = fields.Float(allow_none=True)
    outcome = fields.String(allow_none=True)
    error = fields.Dict(allow_none=True)


class EventSchema(Schema):
    at = fields.DateTime(required=True)
    from_status = fields.String(allow_none=True)
    to_status = fields.String(required=True)
    reason = fields.String(required=True)


class OrderSchema(Schema):
    """An order as the API shows it; card fields appear only as ``**** 1234``."""

    id = fields.UUID(required=True)
    provider = fields.String(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(ALL_STATUSES))
    idempotency_key = fields.String(allow_none=True)
    provider_ref = fields.String(allow_none=True)
    provider_status = fields.String(allow_none=True)
    attempt_count = fields.Integer(required=True)
    due_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    placed_at = fields.DateTime(allow_none=True)
    last_error = fields.Dict(allow_none=True)
    errors = fields.Dict(allow_none=True)
    request = fields.Dict(allow_none=True)
    attempts = fields.List(fields.Nested(AttemptSchema))
    events = fields.List(fields.Nested(EventSchema))


class OrderListSchema(Schema):
    orders = fields.List(fields.Nested(OrderSchema), required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class ListQuerySchema(Schema):
    """The filters and paging of ``GET /orders``."""

    status = fields.String(validate=validate.OneOf(ALL_STATUSES))
    provider = fields.String(validate=known)
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 1_000_000))


class ErrorSchema(Schema):
    error = fields.String(required=True)
    order_id = fields.UUID(allow_none=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


class HealthSchema(Schema):
    ok = fields.Boolean(required=True)
    postgres = fields.String(required=True)
    broker = fields.String(required=True)
