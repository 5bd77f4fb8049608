"""What every provider module offers (the same names in each), and the values they exchange."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from marshmallow import Schema

# Every time a provider gives is bounded: a Retry-After (in seconds or as a date) of more than this, or one that is
# no number at all ("inf", "1e400", a date in year 9999), is taken as this, and the provider is asked again then.
LONGEST_RETRY_AFTER = 900.0
TEST_CARD = "4111111111111111"  # the test card the seeds name; sample orders carry it, only ever to the sandbox
Admin = Callable[[str, dict], dict]  # the sandbox's admin API: admin("chaiz/plans", {}) makes a plan


@dataclass(frozen=True)
class Request:
    """One HTTP request to a provider, relative to its base URL."""

    method: str
    path: str
    json: Any = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] | None = None  # sent form-encoded instead of JSON


@dataclass(frozen=True)
class Response:
    """A provider's answer: status, headers, and the body parsed from JSON when it is JSON."""

    status: int
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Placed:
    """The provider made the order: its reference, its own status, and what we keep of its answer."""

    ref: str
    status: str | None
    response: dict
    http_status: int | None = None


@dataclass(frozen=True)
class ErrorInfo:
    """What a provider's error body says, in its own words."""

    message: str
    code: str | None = None
    details: Any = None


class Key:
    """What a provider's idempotency key promises (``Provider.KEY``)."""

    NONE = "none"  # no key: every request that reaches the provider may make an order
    STABLE = "stable"  # one key per order, on every request; the provider replays its first result (Extend)
    # Kept only across requests that got no answer; renewed after any answer, which the provider would otherwise
    # replay to every later request (Adobe's X-Correlation-Id, seed 002).
    PER_ANSWER = "per_answer"


class Provider(Protocol):
    """One module per provider, each with these names (see ``providers/extend.py``)."""

    ID: str
    # Its variables, ORDERRELAY_<ID>_<NAME>, with their defaults (None: required); BASE_URL among them.
    SETTINGS: dict[str, str | None]
    SANDBOX: str  # the dotted name of the module that simulates it (``orderrelay sandbox`` serves it)
    KEY: str  # a ``Key`` value: what the idempotency key (``request``'s ``key``) makes safe
    KEY_TTL: float | None  # seconds the provider remembers a key's result; None when it has no key
    # True when ``lookup`` can find an order the provider already made for ours (to reconcile a lost answer).
    LOOKUP: bool
    # Headers given a new UUID on every request sent, retries after a 401 included (Adobe's X-Request-Id).
    FRESH_HEADERS: tuple[str, ...]
    # Card fields by dotted path, sealed at rest (True: keep the last four digits for display).
    CARD_FIELDS: dict[str, bool]
    # Fields removed from the stored order once it is placed or finally failed (the CVC).
    ERASE_WHEN_DONE: tuple[str, ...]
    OrderSchema: type[Schema]

    def wait(self, order: dict) -> timedelta | None:
        """The wait the order asks for before it may be placed, if any."""

    # Provider statuses of a placed order that mean the provider failed it after all, and every status the
    # provider documents (a scheduled follow-up reads orders whose status may still change; see FOLLOW_UPS).
    FAILED_STATUSES: frozenset[str]
    KNOWN_STATUSES: frozenset[str]  # every status the provider documents (a follow-up keeps following others)

    def request(self, order: dict, key: str, cfg: Any) -> Request:
        """The create-order request; ``key`` is the same on every attempt for the order."""

    def response(self, body: Any) -> Placed:
        """The create-order (or lookup) answer as a placed order."""

    def error(self, response: Response) -> ErrorInfo:
        """The provider's error body in its own words."""

    def lookup(self, order: dict) -> Request | None:
        """A request that finds an order already made for this one, or None where the provider has none."""

    def found(self, body: Any, order: dict) -> list[Placed]:
        """The orders in the lookup's answer that are provably this ``order`` (never one merely similar)."""

    def follow_up(self, order: dict, ref: str) -> Request | None:
        """A request that reads a placed order's current state at the provider, or None where there is none."""

    async def authenticate(self, http: Any, credentials: Any, *, fresh: bool) -> dict[str, str]:
        """The auth headers; ``fresh`` asks for a new token after a 401."""

    def sample(self, tag: str, admin: Admin | None = None, **extra: Any) -> dict:
        """A valid order (the demo's, the drill's, the tests'): ``admin`` makes what it needs in the sandbox."""


# Every name a provider module declares: the provider table checks each module for all of them.
NAMES = tuple(name for name in Provider.__annotations__) + tuple(
    name for name in vars(Provider) if not name.startswith("_") and callable(vars(Provider)[name])
)


# For providers without the capability: ``lookup = no_lookup`` and so on, so every module has every name.
def no_wait(order: dict) -> timedelta | None:
    """The order carries no wait of its own."""
    return None


def no_lookup(order: dict) -> None:
    """The provider has no known lookup."""
    return None


def nothing_found(body: Any, order: dict) -> list[Placed]:
    return []


def no_follow_up(order: dict, ref: str) -> None:
    """A placed order does not change later (or no way to read it is known)."""
    return None


def holds(found: Any, sent: Any) -> bool:
    """Whether what a provider holds carries every value we sent: each key of a sent object with an equal value
    (the provider may add its own), each list item by item. The proof a lookup gives that it found our order."""
    if isinstance(sent, dict):
        return isinstance(found, dict) and all(k in found and holds(found[k], v) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(found, list) and len(found) == len(sent) and all(map(holds, found, sent))
    if isinstance(sent, bool) or isinstance(found, bool):
        return found is sent
    return found == sent


def bounded_wait(seconds: float) -> float:
    """A wait a provider asked for, from 0 to LONGEST_RETRY_AFTER: NaN and anything huge (infinity included) the
    longest, anything negative (minus infinity included) none."""
    if math.isnan(seconds):
        return LONGEST_RETRY_AFTER
    return min(LONGEST_RETRY_AFTER, max(0.0, seconds))


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), bounded; None when it has none or it
    means nothing."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    try:
        return bounded_wait(float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a bare one is read as such
        when = when.replace(tzinfo=UTC)
    try:
        return bounded_wait((when - datetime.now(UTC)).total_seconds())
    except OverflowError:
        return LONGEST_RETRY_AFTER
