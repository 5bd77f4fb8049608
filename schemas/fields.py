"""Field types and validators shared by every provider's schema.

No input can make validation slow, by design: every pattern runs on RE2 (linear time in the input, no
backtracking) as a full match, so a trailing newline is no match either; digits are ASCII digits; and a field's
length bound is checked before anything else looks at it (``Chain`` stops at the first check that fails, where
marshmallow would run them all).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pycountry
import re2
import us
from marshmallow import RAISE, Schema, ValidationError, fields, validate

MAX_SAFE_INTEGER = 2**53 - 1
US_STATES = frozenset(s.abbr for s in us.states.STATES_AND_TERRITORIES) | {"DC"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")
# What ECMAScript's \s means (the seeds' patterns are OpenAPI's, so ECMA-262's): WhiteSpace and LineTerminator.
WHITESPACE = "\t\n\x0b\x0c\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


class Pattern(validate.Validator):
    """A full match of an RE2 pattern: linear time in the input, and ``$`` never lets a trailing newline by."""

    def __init__(self, pattern: str, error: str, *, documented: str | None = None):
        self.regex = re2.compile(pattern)
        self.error = error
        # The pattern as the OpenAPI document shows it (ECMA-262): the seed's own where it differs in spelling.
        self.documented = documented or f"^{pattern}$"

    def __call__(self, value: Any) -> Any:
        try:
            matched = isinstance(value, str) and self.regex.fullmatch(value) is not None
        except UnicodeEncodeError:  # a lone surrogate: never reaches here past the envelope, but no match either
            matched = False
        if not matched:
            raise ValidationError(self.error)
        return value


class Chain(validate.Validator):
    """Validators run in order, stopping at the first that fails: a bound is checked before any pattern or lookup
    sees the value, and a value that is too long gets that one clear error."""

    def __init__(self, *validators: Callable[[Any], Any]):
        self.validators = validators

    def __call__(self, value: Any) -> Any:
        for check in self.validators:
            if check(value) is False:
                raise ValidationError("Invalid value.")
        return value


def _no_control_characters(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError("Must not contain control characters.")


class Strict(Schema):
    """A schema that refuses fields it does not know (each provider's bodies are built on it)."""

    class Meta:
        unknown = RAISE


def Text(max_length: int = 255, min_length: int = 1, **kwargs) -> fields.String:
    """A string of bounded length with no control characters (hostile input stops here), then its own checks."""
    checks = [validate.Length(min=min_length, max=max_length), _no_control_characters, *kwargs.pop("validate", [])]
    return fields.String(validate=Chain(*checks), **kwargs)


def Digits(length: int | tuple[int, int], error: str, **kwargs) -> fields.String:
    """A string of ASCII digits only (``"\u0661"`` is a digit to Python, not to a card network), of a length."""
    low, high = (length, length) if isinstance(length, int) else length
    checks = [validate.Length(low, high), Pattern(f"[0-9]{{{low},{high}}}", error), *kwargs.pop("validate", [])]
    return fields.String(validate=Chain(*checks), **kwargs)


class _Ascii:
    """A text field whose parsing accepts ASCII text of at most ``max_length`` characters only: Python's date and
    UUID parsers take other scripts' digits."""

    max_length = 64
    what = "value"

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or len(value) > self.max_length or not value.isascii():
            raise ValidationError(f"Not a valid {self.what}.")
        return super()._deserialize(value, attr, data, **kwargs)


class Date(_Ascii, fields.Date):
    """An ISO 8601 date, in ASCII digits."""

    what = "date"


class AwareDateTime(_Ascii, fields.AwareDateTime):
    """An ISO 8601 time with an offset, in ASCII digits."""

    what = "datetime"


class UUID(_Ascii, fields.UUID):
    """A UUID, in ASCII hex digits."""

    what = "UUID"


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


def Email(**kwargs) -> fields.String:
    """An e-mail address of at most 254 characters (the length checked first, then marshmallow's rule)."""
    checks = [validate.Length(max=254), validate.Email(), *kwargs.pop("validate", [])]
    return fields.String(validate=Chain(*checks), **kwargs)


_HOSTNAME = re2.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?\.?")


def _ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def WebUrl(schemes: frozenset[str] = frozenset({"https", "http"}), max_length: int = 2000, **kwargs) -> fields.String:
    """An absolute http(s) URL with a host name or address, of at most ``max_length`` characters: parsed by
    ``urllib`` and RE2 (marshmallow's URL pattern takes 0.1 s on some 2000-character inputs)."""

    def url(value: str) -> None:
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            raise ValidationError("Not a valid URL: bad port.") from None
        host = parts.hostname or ""
        if parts.scheme not in schemes or not (_HOSTNAME.fullmatch(host) or _ipv6(host)):
            raise ValidationError("Not a valid URL.")
        if any(ch.isspace() for ch in value):
            raise ValidationError("Not a valid URL.")

    checks = [validate.Length(max=max_length), _no_control_characters, url, *kwargs.pop("validate", [])]
    return fields.String(validate=Chain(*checks), **kwargs)


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
