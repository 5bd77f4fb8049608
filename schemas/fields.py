"""Field types and validators shared by every provider's schema."""

from __future__ import annotations

import re

import pycountry
import us
from marshmallow import ValidationError, fields, validate

MAX_SAFE_INTEGER = 2**53 - 1
US_STATES = frozenset(s.abbr for s in us.states.STATES_AND_TERRITORIES) | {"DC"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")


def _no_control_characters(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError("Must not contain control characters.")


def Text(max_length: int = 255, min_length: int = 1, **kwargs) -> fields.String:
    """A string of bounded length with no control characters (hostile input stops here)."""
    checks = [validate.Length(min=min_length, max=max_length), _no_control_characters]
    checks += kwargs.pop("validate", [])
    return fields.String(validate=checks, **kwargs)


def Money(**kwargs) -> fields.Integer:
    """An amount in minor units: a whole number from 0 to 2^53-1 (1999 is $19.99)."""
    return fields.Integer(strict=True, validate=validate.Range(0, MAX_SAFE_INTEGER), **kwargs)


def MillisTimestamp(**kwargs) -> fields.Integer:
    """A 13-digit Unix timestamp in milliseconds."""
    return fields.Integer(
        strict=True,
        validate=validate.Range(10**12, 10**13 - 1, error="Must be a 13-digit timestamp in milliseconds."),
        **kwargs,
    )


class StrictNumber(fields.Float):
    """A JSON number (int or float), never a string or a boolean; NaN and infinity refused."""

    def __init__(self, **kwargs):
        super().__init__(allow_nan=False, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """true or false, and nothing that merely looks like them (not 1, not "yes")."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def us_state(value: str) -> None:
    """A two-letter US state (or territory) code, any case."""
    if value.upper() not in US_STATES:
        raise ValidationError("Not a two-letter US state code.")


def _currency(value: str) -> None:
    if not (len(value) == 3 and value.isupper() and pycountry.currencies.get(alpha_3=value)):
        raise ValidationError("Not an ISO 4217 currency code (e.g. USD).")


def _country(value: str) -> None:
    if not value.isupper() or len(value) not in (2, 3):
        raise ValidationError("Not an ISO 3166 country code (e.g. US).")
    key = "alpha_2" if len(value) == 2 else "alpha_3"
    if pycountry.countries.get(**{key: value}) is None:
        raise ValidationError("Not an ISO 3166 country code (e.g. US).")


def CurrencyCode(**kwargs) -> fields.String:
    """An ISO 4217 currency code."""
    return fields.String(validate=_currency, **kwargs)


def CountryCode(**kwargs) -> fields.String:
    """An ISO 3166-1 alpha-2 or alpha-3 country code."""
    return fields.String(validate=_country, **kwargs)


def Email(**kwargs) -> fields.Email:
    """An e-mail address of at most 254 characters."""
    return fields.Email(validate=validate.Length(max=254), **kwargs)


def flatten_errors(messages: dict | list, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dict as {"a.b.0.c": [messages]}: one entry per field path."""
    if isinstance(messages, list):
        if all(isinstance(m, str) for m in messages):
            return {prefix or "_schema": list(messages)}
        out: dict[str, list[str]] = {}
        for item in messages:
            for path, msgs in flatten_errors(item, prefix).items():
                out.setdefault(path, []).extend(msgs)
        return out
    out = {}
    for key, value in messages.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key == "_schema" and prefix:
            path = prefix
        out.update(flatten_errors(value, path) if isinstance(value, dict | list) else {path: [str(value)]})
    return out
