"""A toy provider, added from the test tree as a sixth provider would be: this module, its schema and its
sandbox, and one entry in ORDERRELAY_PROVIDERS (``tests.toy.provider``). Nothing in orderrelay names it.

Auth: a static bearer token. Idempotency: ``Idempotency-Key``, the order's key, replayed by the toy for a day.
"""

from __future__ import annotations

from typing import Any

from orderrelay.foundation.options import ProviderSettings
from orderrelay.providers.base import (
    ErrorInfo,
    Key,
    Placed,
    Request,
    Response,
    no_follow_up,
    no_lookup,
    no_wait,
    nothing_found,
)
from tests.toy.schema import OrderSchema  # noqa: F401 - part of the provider interface

ID = "toy"
SETTINGS: dict[str, str | None] = {"BASE_URL": "https://toy.invalid", "TOKEN": None}
SANDBOX = "tests.toy.sandbox"
KEY = Key.STABLE
KEY_TTL = 86400.0
LOOKUP = False
FRESH_HEADERS: tuple[str, ...] = ()
CARD_FIELDS: dict[str, bool] = {}
ERASE_WHEN_DONE: tuple[str, ...] = ()
FAILED_STATUSES: frozenset[str] = frozenset()
KNOWN_STATUSES: frozenset[str] = frozenset()
wait, lookup, found, follow_up = no_wait, no_lookup, nothing_found, no_follow_up


def request(order: dict, key: str, cfg: Any) -> Request:
    return Request("POST", "/orders", json=order, headers={"Idempotency-Key": key})


def response(body: Any) -> Placed:
    return Placed(ref=str(body["id"]), status=body.get("status"), response=body)


def error(response: Response) -> ErrorInfo:
    body = response.body if isinstance(response.body, dict) else {}
    return ErrorInfo(str(body.get("error", f"HTTP {response.status}")))


async def authenticate(http: Any, cfg: ProviderSettings, *, fresh: bool) -> dict[str, str]:
    return {"Authorization": f"Bearer {cfg.credentials['token']}"}


def sample(tag: str, admin: Any = None, **extra) -> dict:
    """A valid toy order: a toy's name and how many."""
    return {"reference": tag, "toy": "spinning top", "quantity": 2, **extra}
