"""Chaiz's complete-order body, ``PartnerCreateCompleteOrderModel`` (seed 000), with every constraint it states.

Payment: a 13-16 digit card number that passes the Luhn check, ``MM/YYYY`` expiry not in the past, the
method and option enums, a 3-5 digit CVC when present. User details: the seed's patterns and lengths, a US
state, and a real 5-digit ZIP code whose state is that state (offline ``zipcodes`` data).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import zipcodes
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from stdnum import luhn

from schemas.fields import Text, us_state

METHOD_TYPES = ("None", "VISA", "MASTERCARD", "AmericanExpress", "Discover", "ACHSavings", "ACHChecking")
PAYMENT_OPTIONS = ("Default", "Half", "Full")

ADDRESS = r"^(?=.*[a-zA-Z])(?!.*@).*$"
CITY = r"^[A-Za-z\u00C0-\u024F'.\-]+(?:[\s\-][A-Za-z\u00C0-\u024F'.\-]+)*$"
EMAIL = r"^[^\s@]+@[^\s@]+\.[^\s@]+$"
NAME = r"^[a-zA-Z' .-]+$"


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _card_number(value: str) -> None:
    # The messages never repeat the number.
    if not value.isdigit():
        raise ValidationError("Must contain digits only.")
    if not luhn.is_valid(value):
        raise ValidationError("Not a valid card number (Luhn check failed).")


def _expiry(value: str) -> None:
    match = re.fullmatch(r"(0[1-9]|1[0-2])/(\d{4})", value)
    if not match:
        raise ValidationError("Must be MM/YYYY.")
    month, year = int(match[1]), int(match[2])
    now = datetime.now(UTC)
    if (year, month) < (now.year, now.month):
        raise ValidationError("The card has expired.")


class PaymentSchema(_Strict):
    accountNumber = fields.String(required=True, validate=[validate.Length(13, 16), _card_number])
    creditCardExpirationDateString = fields.String(required=True, validate=_expiry)
    methodType = fields.String(required=True, validate=validate.OneOf(METHOD_TYPES))
    paymentOption = fields.String(required=True, validate=validate.OneOf(PAYMENT_OPTIONS))
    cvc = fields.String(
        allow_none=True,
        validate=[validate.Length(3, 5), validate.Regexp(r"^\d+$", error="Must contain digits only.")],
    )


class UserDetailsSchema(_Strict):
    address = Text(
        min_length=5,
        max_length=60,
        required=True,
        validate=[validate.Regexp(ADDRESS, error="Must include a street name and no @.")],
    )
    city = Text(min_length=3, max_length=32, required=True, validate=[validate.Regexp(CITY, error="Not a city name.")])
    email = fields.Email(
        required=True, validate=[validate.Length(max=254), validate.Regexp(EMAIL, error="Not a valid email address.")]
    )
    firstName = Text(
        min_length=2, max_length=32, required=True, validate=[validate.Regexp(NAME, error="Letters only.")]
    )
    lastName = Text(min_length=2, max_length=32, required=True, validate=[validate.Regexp(NAME, error="Letters only.")])
    state = fields.String(
        required=True,
        validate=[
            validate.Regexp(r"^[a-zA-Z]+$", error="Letters only."),
            us_state,
        ],
    )
    zip = fields.String(required=True, validate=validate.Regexp(r"^\d{5}$", error="Must be a 5-digit ZIP code."))
    addressApartment = Text(max_length=4, allow_none=True)
    externalId = Text(allow_none=True)
    phoneNumber = fields.String(
        allow_none=True, validate=validate.Regexp(r"^\d{10}$", error="Must be a 10-digit US phone number.")
    )

    @validates_schema
    def zip_matches_state(self, data, **kwargs):
        """The ZIP code is real and lies in the state given."""
        if "zip" not in data or "state" not in data:
            return
        found = zipcodes.matching(data["zip"])
        if not found:
            raise ValidationError("Not a known US ZIP code.", "zip")
        states = {z["state"] for z in found}
        if data["state"].upper() not in states:
            raise ValidationError(
                f"ZIP code {data['zip']} is in {', '.join(sorted(states))}, not {data['state']}.", "state"
            )


class OrderSchema(_Strict):
    payment = fields.Nested(PaymentSchema, required=True)
    searchResultPlanIds = fields.List(
        fields.Integer(strict=True), required=True, validate=validate.Length(1, 20, error="Give 1 to 20 plan ids.")
    )
    userDetails = fields.Nested(UserDetailsSchema, required=True)
    device = Text(max_length=40, allow_none=True)
    partner = Text(max_length=100, allow_none=True)
    selectedAddonIds = fields.List(fields.Integer(strict=True), allow_none=True, validate=validate.Length(max=50))
