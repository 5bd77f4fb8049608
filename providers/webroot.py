"""Webroot Unity shop (seed 004): ``POST /service/api/ecom/shop/orders`` converts a cart into an order.

Auth: OAuth 2 password grant at ``POST /auth/token`` with Basic client credentials; access tokens live 5
minutes, so the client refreshes with the refresh token shortly before expiry and on a 401, and never sends
a token it knows has expired. Every call names orderrelay and its version in ``User-Agent``.
No idempotency key, but a cart converts once: a lost answer is reconciled by reading the cart
(``GET /service/api/ecom/shop/carts/{code}``). A converted cart means the order was placed; an open cart is
safe to send again. ``CartOrderStatusId``'s values are not public; the sandbox's choice: 1 open, 2 converted.
"""

from __future__ import annotations

import base64
from typing import Any

from orderrelay.foundation.options import ProviderSettings
from orderrelay.providers.auth import oauth_token
from orderrelay.providers.base import Admin, ErrorInfo, Key, Placed, Request, Response, no_follow_up, no_wait
from orderrelay.schemas.webroot import OrderSchema  # noqa: F401 - part of the provider interface

ID = "webroot"
# ORDERRELAY_WEBROOT_<NAME>, with its default (None: required); _URL names are URLs, _PATH names start with /
SETTINGS: dict[str, str | None] = {
    "BASE_URL": "https://unityapi.webrootcloudav.com",
    "CLIENT_ID": None,
    "CLIENT_SECRET": None,
    "USERNAME": None,
    "PASSWORD": None,
}
SANDBOX = "orderrelay.sandbox.webroot"  # the module that simulates it
KEY = Key.NONE
KEY_TTL = None
LOOKUP = True
FRESH_HEADERS: tuple[str, ...] = ()
CARD_FIELDS: dict[str, bool] = {}
ERASE_WHEN_DONE: tuple[str, ...] = ()
FAILED_STATUSES: frozenset[str] = frozenset()
KNOWN_STATUSES: frozenset[str] = frozenset()  # no follow-up reads its statuses
wait, follow_up = no_wait, no_follow_up
CART_CONVERTED = 2
JSON = {"Accept": "application/json"}


def request(order: dict, key: str, cfg: ProviderSettings) -> Request:
    """Convert the cart named by ``VendorOrderCode``."""
    return Request("POST", "/service/api/ecom/shop/orders", json=order, headers=JSON)


def response(body: Any) -> Placed:
    """The order: its code, payment status, key codes, items and customers (all kept)."""
    status = (body.get("PaymentHeader") or {}).get("PaymentStatusName")
    return Placed(ref=str(body["VendorOrderCode"]), status=status, response=body)


def error(resp: Response) -> ErrorInfo:
    """Webroot's error body is not public; the sandbox answers ``{"Message", "ErrorCode"}`` (ASP.NET style)."""
    body = resp.body
    if isinstance(body, dict):
        message = body.get("Message") or body.get("message") or body.get("error_description") or body.get("error")
        code = body.get("ErrorCode") or body.get("error")
        return ErrorInfo(message=str(message or f"HTTP {resp.status}"), code=None if code is None else str(code))
    return ErrorInfo(message=f"HTTP {resp.status}: {str(body)[:200]}")


def lookup(order: dict) -> Request:
    """Read the cart the order converts."""
    return Request("GET", f"/service/api/ecom/shop/carts/{order['VendorOrderCode']}", headers=JSON)


def found(body: Any, order: dict) -> list[Placed]:
    """A cart converted into this order (its cart code, and its purchase order number where the answer carries
    one) is a placed order; an open cart is not, so it is safe to send again."""
    if not isinstance(body, dict) or body.get("CartOrderStatusId") != CART_CONVERTED:
        return []
    made = body.get("Order")
    if not isinstance(made, dict) or made.get("VendorOrderCode") != order["VendorOrderCode"]:
        return []
    if made.get("PurchaseOrder", order["PurchaseOrder"]) != order["PurchaseOrder"]:
        return []  # converted, but by another purchase order than ours
    return [response(made)]


async def authenticate(http: Any, cfg: ProviderSettings, *, fresh: bool) -> dict[str, str]:
    """A 5-minute bearer token: password grant first, then refresh-token grants."""
    pair = f"{cfg.credentials['client_id']}:{cfg.credentials['client_secret']}".encode()
    basic = {"Authorization": f"Basic {base64.b64encode(pair).decode()}", **JSON}

    def grant(refresh_token: str | None) -> Request:
        if refresh_token:
            form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        else:
            form = {
                "grant_type": "password",
                "username": cfg.credentials["username"],
                "password": cfg.credentials["password"],
                "scope": "*",
            }
        return Request("POST", "/auth/token", form=form, headers=basic)

    token = await oauth_token(http, ID, cfg.base_url, grant, fresh=fresh, default_ttl=300.0)
    return {"Authorization": f"Bearer {token}"}


def sample(tag: str, admin: Admin | None = None, **extra) -> dict:
    """A valid order for the demo, the drill and the tests, converting a cart the sandbox makes (``admin``), or
    a made-up one; each cart is ordered once."""
    cart = admin("webroot/carts", {})["VendorOrderCode"] if admin else "MSP0046543057"
    return sample_order(cart, **extra)


def sample_order(cart_code: str, **extra) -> dict:
    """A valid Webroot order converting a cart made by the sandbox's admin API."""
    return {"VendorOrderCode": cart_code, "PaymentMethod": "PurchaseOrder", "PurchaseOrder": "P4713A20", **extra}
