r"""Chaiz's complete-order body, ``PartnerCreateCompleteOrderModel`` (seed 000), with every constraint it states.

Payment: a 13-16 digit card number that passes the Luhn check, ``MM/YYYY`` expiry not in the past, the
method and option enums, a 3-5 digit CVC when present. User details: the seed's patterns and lengths, a US
state, and a real 5-digit ZIP code whose state is that state (offline ``zipcodes`` data). Every pattern is the
seed's, matched whole (ECMA-262's ``\s``, ASCII digits) on RE2, after the field's length.
"""

from __future__ import annotations

from datetime import UTC, datetime

import re2
import zipcodes
from marshmallow import ValidationError, fields, validate, validates_schema
from stdnum import luhn

from orderrelay.schemas.fields import WHITESPACE, Chain, Digits, Email, Pattern, Strict, Text, us_state

METHOD_TYPES = ("None", "VISA", "MASTERCARD", "AmericanExpress", "Discover", "ACHSavings", "ACHChecking")
PAYMENT_OPTIONS = ("Default", "Half", "Full")

# The seed's patterns, as whole matches. ADDRESS is the seed's ^(?=.*[a-zA-Z])(?!.*@).*$ without lookaheads (RE2
# has none): a line with a letter and no @.
ADDRESS = "[^\n@]*[a-zA-Z][^\n@]*"
LETTERS = "A-Za-z\u00c0-\u024f'.\\-"
CITY = f"[{LETTERS}]+(?:[{WHITESPACE}\\-][{LETTERS}]+)*"
EMAIL = f"[^{WHITESPACE}@]+@[^{WHITESPACE}@]+\\.[^{WHITESPACE}@]+"
NAME = "[a-zA-Z' .-]+"
EXPIRY = re2.compile("(0[1-9]|1[0-2])/([0-9]{4})")
SEED_ADDRESS = r"^(?=.*[a-zA-Z])(?!.*@).*$"  # as the seed writes them, for the OpenAPI document
SEED_CITY = r"^[A-Za-z\u00C0-\u024F'.\-]+(?:[\s\-][A-Za-z\u00C0-\u024F'.\-]+)*$"
SEED_EMAIL = r"^[^\s@]+@[^\s@]+\.[^\s@]+$"


def _luhn(value: str) -> None:
    # The messages never repeat the number.
    if not luhn.is_valid(value):
        raise ValidationError("Not a valid card number (Luhn check failed).")


def _expiry(value: str) -> None:
    match = EXPIRY.fullmatch(value) if len(value) == 7 else None
    if not match:
        raise ValidationError("Must be MM/YYYY.")
    month, year = int(match[1]), int(match[2])
    now = datetime.now(UTC)
    if (year, month) < (now.year, now.month):
        raise ValidationError("The card has expired.")


class PaymentSchema(Strict):
    accountNumber = Digits((13, 16), "Must contain digits only.", required=True, validate=[_luhn])
    creditCardExpirationDateString = fields.String(required=True, validate=_expiry)
    methodType = fields.String(required=True, validate=validate.OneOf(METHOD_TYPES))
    paymentOption = fields.String(required=True, validate=validate.OneOf(PAYMENT_OPTIONS))
    cvc = Digits((3, 5), "Must contain digits only.", allow_none=True)


class UserDetailsSchema(Strict):
    address = Text(
        min_length=5,
        max_length=60,
        required=True,
        validate=[Pattern(ADDRESS, "Must include a street name and no @.", documented=SEED_ADDRESS)],
    )
    city = Text(
        min_length=3, max_length=32, required=True, validate=[Pattern(CITY, "Not a city name.", documented=SEED_CITY)]
    )
    email = Email(required=True, validate=[Pattern(EMAIL, "Not a valid email address.", documented=SEED_EMAIL)])
    firstName = Text(min_length=2, max_length=32, required=True, validate=[Pattern(NAME, "Letters only.")])
    lastName = Text(min_length=2, max_length=32, required=True, validate=[Pattern(NAME, "Letters only.")])
    state = fields.String(
        required=True, validate=Chain(validate.Length(max=2), Pattern("[a-zA-Z]+", "Letters only."), us_state)
    )
    zip = Digits(5, "Must be a 5-digit ZIP code.", required=True)
    addressApartment = Text(max_length=4, allow_none=True)
    externalId = Text(allow_none=True)
    phoneNumber = Digits(10, "Must be a 10-digit US phone number.", allow_none=True)

    @validates_schema
    def zip_matches_state(self, data, **kwargs):
        """The ZIP code is real and lies in the state given."""
        if "zip" not in data or "state" not in data:
            return
        try:
            found = zipcodes.matching(data["zip"])
        except BaseException as exc:  # a Rust panic is a BaseException; the zip is five ASCII digits by now
            if type(exc).__name__ != "PanicException":
                raise
            found = []
        if not found:
            raise ValidationError("Not a known US ZIP code.", "zip")
        states = {z["state"] for z in found}
        if data["state"].upper() not in states:
            raise ValidationError(
                f"ZIP code {data['zip']} is in {', '.join(sorted(states))}, not {data['state']}.", "state"
            )


class OrderSchema(Strict):
    payment = fields.Nested(PaymentSchema, required=True)
    searchResultPlanIds = fields.List(
        fields.Integer(strict=True), required=True, validate=validate.Length(1, 20, error="Give 1 to 20 plan ids.")
    )
    userDetails = fields.Nested(UserDetailsSchema, required=True)
    device = Text(max_length=40, allow_none=True)
    partner = Text(max_length=100, allow_none=True)
    selectedAddonIds = fields.List(fields.Integer(strict=True), allow_none=True, validate=validate.Length(max=50))
