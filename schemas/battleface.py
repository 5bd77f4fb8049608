"""battleface's dynamic order body (seed 003): an order made from a quote, the product inferred.

``quote_id``, ``programid`` and ``hostcountrystate`` (a two-letter US state) are required; ``products`` holds
exactly one of ``ids`` (integers) or ``uuids`` (UUIDs). The optional overrides are the fields the seed's
response shows: the applicant (``dob`` a date in the past), ``start_at`` on or before ``end_at``,
``currency_id`` (ISO 4217), destinations (ISO country codes) and the expected ``premium``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from marshmallow import ValidationError, fields, validate, validates_schema

from orderrelay.schemas.fields import (
    UUID,
    Chain,
    CountryCode,
    CurrencyCode,
    Date,
    Email,
    Pattern,
    Strict,
    StrictNumber,
    Text,
    us_state,
)


def _past(value) -> None:
    if value >= datetime.now(UTC).date():
        raise ValidationError("Must be a date in the past.")


class ProductsSchema(Strict):
    ids = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1)), validate=validate.Length(1, 50))
    uuids = fields.List(UUID(), validate=validate.Length(1, 50))

    @validates_schema
    def exactly_one(self, data, **kwargs):
        """Either product ids or product uuids, not both and not neither."""
        if ("ids" in data) == ("uuids" in data):
            raise ValidationError("Give exactly one of ids or uuids.")


class PersonSchema(Strict):
    first_name = Text(max_length=100)
    middle_name = Text(max_length=100)
    last_name = Text(max_length=100)
    dob = Date(validate=_past)
    email = Email()
    contact_number = Text(max_length=32, validate=[Pattern(r"\+?[0-9 ()-]{5,32}", "Not a phone number.")])
    address = Text(max_length=200)
    city = Text(max_length=100)
    post_code = Text(max_length=20)
    country_code = CountryCode()
    state_code = Text(max_length=3)


class DestinationSchema(Strict):
    country_code = CountryCode(required=True)


class OrderSchema(Strict):
    quote_id = Text(max_length=64, required=True, validate=[Pattern("[A-Za-z0-9_-]+", "Not a quote id.")])
    programid = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))
    hostcountrystate = fields.String(
        required=True,
        validate=Chain(validate.Length(max=2), Pattern("[A-Z]{2}", "Two capital letters (e.g. OH)."), us_state),
    )
    products = fields.Nested(ProductsSchema)
    applicant = fields.Nested(PersonSchema)
    beneficiary = fields.Nested(PersonSchema)
    start_at = Date()
    end_at = Date()
    currency_id = CurrencyCode()
    destinations = fields.List(fields.Nested(DestinationSchema), validate=validate.Length(1, 50))
    premium = StrictNumber(validate=validate.Range(min=0))

    @validates_schema
    def dates_in_order(self, data, **kwargs):
        """The trip starts on or before it ends."""
        if "start_at" in data and "end_at" in data and data["start_at"] > data["end_at"]:
            raise ValidationError("Must be on or after start_at.", "end_at")
