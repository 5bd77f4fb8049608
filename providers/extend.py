"""Extend product protection orders (seed 001).

Auth: a short-lived token from ``POST /auth/oauth/token`` (client credentials), sent as
``X-Extend-Access-Token``, renewed before expiry and on a 401. The API version travels in ``Accept``.
Idempotency: ``X-Idempotency-Key``, the order's provider key, the same on every attempt; Extend replays the
first result for a key for at least 24 hours. Lookup: ``GET /orders/search?transactionId=...``; a found order is
ours only if it holds our store, transaction, currency, total and every line item as we sent them (another
order with the same ``transactionId`` is never adopted).
The wait (``transactionDelay``, days, fractional) is consumed by orderrelay, so the order sent carries none.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from orderrelay.foundation.options import ProviderSettings
from orderrelay.providers.auth import oauth_token
from orderrelay.providers.base import Admin, ErrorInfo, Key, Placed, Request, Response, holds, no_follow_up
from orderrelay.schemas.extend import OrderSchema  # noqa: F401 - part of the provider interface

ID = "extend"
# ORDERRELAY_EXTEND_<NAME>, with its default (None: required); _URL names are URLs, _PATH names start with /
SETTINGS: dict[str, str | None] = {
    "BASE_URL": "https://api-demo.helloextend.com",
    "CLIENT_ID": None,
    "CLIENT_SECRET": None,
}
SANDBOX = "orderrelay.sandbox.extend"  # the module that simulates it
KEY = Key.STABLE
KEY_TTL = 24 * 3600.0  # Extend replays a key's first result for at least 24 hours
LOOKUP = True
FRESH_HEADERS: tuple[str, ...] = ()
CARD_FIELDS: dict[str, bool] = {}  # Extend orders carry no card data
ERASE_WHEN_DONE: tuple[str, ...] = ()
FAILED_STATUSES: frozenset[str] = frozenset()
KNOWN_STATUSES: frozenset[str] = frozenset()  # "pending" at Extend is a wait orderrelay has served
follow_up = no_follow_up  # a placed Extend order does not fail later
API_VERSION = "2022-02-01"
ACCEPT = f"application/json; version={API_VERSION}"


def wait(order: dict) -> timedelta | None:
    """``transactionDelay`` days (0.5 is 12 hours) as a wait, or None."""
    days = order.get("transactionDelay")
    return timedelta(days=days) if days else None


def request(order: dict, key: str, cfg: ProviderSettings) -> Request:
    """``POST /orders`` with the idempotency key; the delay is dropped because orderrelay already waited."""
    body = {k: v for k, v in order.items() if k != "transactionDelay"}
    return Request("POST", "/orders", json=body, headers={"X-Idempotency-Key": key, "Accept": ACCEPT})


def response(body: Any) -> Placed:
    """Extend's order: its ``id`` is the reference, its ``status`` Extend's own."""
    return Placed(ref=str(body["id"]), status=body.get("status"), response=body)


def error(resp: Response) -> ErrorInfo:
    """Extend's error body is not public; older specs use ``{"code", "message"}``."""
    body = resp.body
    if isinstance(body, dict):
        return ErrorInfo(
            message=str(body.get("message") or f"HTTP {resp.status}"),
            code=None if body.get("code") is None else str(body["code"]),
            details=body.get("errors"),
        )
    return ErrorInfo(message=f"HTTP {resp.status}: {str(body)[:200]}")


def lookup(order: dict) -> Request:
    """Orders Extend holds for the order's ``transactionId``."""
    return Request(
        "GET", "/orders/search", params={"transactionId": order["transactionId"]}, headers={"Accept": ACCEPT}
    )


ORDER_IDENTITY = ("storeId", "transactionId", "currency", "total")
LINE_IDENTITY = ("lineItemTransactionId", "quantity", "quoteId")
PRICED_IDENTITY = ("id", "purchasePrice")  # of a line's product and plan


def identity(order: dict) -> dict:
    """What proves a found Extend order is this one: the store, transaction, currency and total, and each line
    item's id, quantity, quote, product and plan (ids and prices) as recorded at intake."""

    def line(item: dict) -> dict:
        picked = {k: item[k] for k in LINE_IDENTITY if k in item}
        for part in ("product", "plan"):
            if isinstance(item.get(part), dict):
                picked[part] = {k: item[part][k] for k in PRICED_IDENTITY if k in item[part]}
        return picked

    return {
        **{k: order[k] for k in ORDER_IDENTITY if k in order},
        "lineItems": [line(item) for item in order.get("lineItems", [])],
    }


def found(body: Any, order: dict) -> list[Placed]:
    """The orders of the search that hold this order's identity; one merely sharing its ``transactionId`` is not."""
    orders = body.get("orders") if isinstance(body, dict) else None
    wanted = identity(order)
    return [response(o) for o in orders or [] if isinstance(o, dict) and "id" in o and holds(o, wanted)]


async def authenticate(http: Any, cfg: ProviderSettings, *, fresh: bool) -> dict[str, str]:
    """``X-Extend-Access-Token`` from the client-credentials token endpoint."""
    body = {
        "grant_type": "client_credentials",
        "client_id": cfg.credentials["client_id"],
        "client_secret": cfg.credentials["client_secret"],
    }
    grant = Request("POST", "/auth/oauth/token", json=body, headers={"Accept": ACCEPT})
    token = await oauth_token(http, ID, cfg.base_url, lambda _: grant, fresh=fresh)
    return {"X-Extend-Access-Token": token}


def sample(tag: str, admin: Admin | None = None, **extra) -> dict:
    """A valid order for the demo, the drill, the bench and the tests: ``tag`` is its transaction."""
    return sample_order(tag, **extra)


def sample_order(transaction_id: str, **extra) -> dict:
    """A valid Extend order: one contract line (product + plan) and one lead line."""
    now_ms = int(time.time() * 1000)
    return {
        "currency": "USD",
        "storeId": "demo-store",
        "transactionId": transaction_id,
        "transactionDate": now_ms,
        "customer": {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "billingAddress": {
                "address1": "12 Analytical St",
                "city": "Boston",
                "countryCode": "US",
                "postalCode": "02108",
                "province": "MA",
            },
        },
        "lineItems": [
            {
                "lineItemTransactionId": f"{transaction_id}-1",
                "quantity": 1,
                "product": {
                    "id": "SKU-TV-55",
                    "title": "55in TV",
                    "listPrice": 49999,
                    "purchasePrice": 44999,
                    "purchaseDate": now_ms,
                },
                "plan": {"id": "PLAN-TV-3Y", "purchasePrice": 5999},
            },
            {
                "lineItemTransactionId": f"{transaction_id}-2",
                "quantity": 2,
                "product": {"id": "SKU-HDMI", "title": "HDMI cable", "purchasePrice": 1299},
            },
        ],
        "total": 54297,
        **extra,
    }
