"""Adobe VIP Marketplace orders (seed 002): ``POST /v3/customers/{customerId}/orders``.

Auth: an IMS token (client credentials, form-encoded, at the IMS host), renewed before expiry and on a 401,
with ``X-Api-Key``. Idempotency: ``X-Correlation-Id`` is the order's provider key. Adobe replays any response
it gave for an id (for 10 days), so, as seed 002 says, the id is kept across requests that got no answer and
renewed after any answer - except while an earlier request with it may have made the order (a dropped answer,
a 500/502/504): then only the same id can tell, and it is kept. ``X-Request-Id`` is new for every request.
Orders start as 1002 (pending) and may still fail (1004, 1020-1026): a scheduled follow-up reads them with
``GET /v3/customers/{customerId}/orders/{orderId}`` until their status is final.
"""

from __future__ import annotations

from typing import Any

from orderrelay.foundation.errors import InDoubtError
from orderrelay.foundation.options import ProviderSettings
from orderrelay.providers.auth import oauth_token
from orderrelay.providers.base import (
    Admin,
    ErrorInfo,
    Key,
    Placed,
    Request,
    Response,
    no_lookup,
    no_wait,
    nothing_found,
)
from orderrelay.schemas.adobe_vip import ROUTING_FIELDS, OrderSchema  # noqa: F401 - part of the provider interface

ID = "adobe_vip"
# ORDERRELAY_ADOBE_VIP_<NAME>, with its default (None: required); _URL names are URLs, _PATH names start with /
SETTINGS: dict[str, str | None] = {
    "BASE_URL": "https://partnersandbox-stage.adobe.io",
    "IMS_URL": "https://ims-na1.adobelogin.com",
    "CLIENT_ID": None,
    "CLIENT_SECRET": None,
    "API_KEY": None,
}
SANDBOX = "orderrelay.sandbox.adobe_vip"  # the module that simulates it
KEY = Key.PER_ANSWER
KEY_TTL = 10 * 86400.0  # Adobe replays an id's answer for 10 days
LOOKUP = False  # an order can be read only by the orderId a lost answer would have carried
FRESH_HEADERS = ("X-Request-Id",)
CARD_FIELDS: dict[str, bool] = {}
ERASE_WHEN_DONE: tuple[str, ...] = ()
FAILED_STATUSES = frozenset({"1004", "1008", "1020", "1022", "1024", "1026"})  # failed, cancelled, inactive
# Every status Adobe documents: 1000 complete, 1002 pending, and the failures. Another is kept and still followed.
KNOWN_STATUSES = frozenset({"1000", "1002"}) | FAILED_STATUSES  # 1000 ends the follow-up (FOLLOW_UPS)
# No lookup by correlation id: a lost answer is resent with the same correlation id instead.
wait, lookup, found = no_wait, no_lookup, nothing_found
JSON = {"Accept": "application/json"}


def request(order: dict, key: str, cfg: ProviderSettings) -> Request:
    """The order without its routing fields, with the correlation id (the request id is added per send)."""
    body = {k: v for k, v in order.items() if k not in ROUTING_FIELDS}
    return Request(
        "POST", f"/v3/customers/{order['customerId']}/orders", json=body, headers={**JSON, "X-Correlation-Id": key}
    )


def response(body: Any) -> Placed:
    """Adobe's order: ``orderId`` and its status code (1002 at first). A success that names no order (or is not
    an order at all) says nothing of what was made: in doubt, as an answer lost."""
    if not isinstance(body, dict) or not body.get("orderId"):
        raise InDoubtError("Adobe answered success without an orderId: whether it made the order is unknown")
    return Placed(
        ref=str(body["orderId"]), status=None if body.get("status") is None else str(body["status"]), response=body
    )


def error(resp: Response) -> ErrorInfo:
    """``{"code", "message", "additionalDetails"}``; a 504 says ``error_code`` instead of ``code``."""
    body = resp.body
    if isinstance(body, dict):
        code = body.get("code", body.get("error_code"))
        return ErrorInfo(
            message=str(body.get("message") or f"HTTP {resp.status}"),
            code=None if code is None else str(code),
            details=body.get("additionalDetails") or None,
        )
    return ErrorInfo(message=f"HTTP {resp.status}: {str(body)[:200]}")


def follow_up(order: dict, ref: str) -> Request:
    """Read the order's current status."""
    return Request("GET", f"/v3/customers/{order['customerId']}/orders/{ref}", headers=JSON)


async def authenticate(http: Any, cfg: ProviderSettings, *, fresh: bool) -> dict[str, str]:
    """An IMS access token (client credentials) and the integration's API key."""
    grant = Request(
        "POST",
        "/ims/token/v3",
        form={
            "grant_type": "client_credentials",
            "client_id": cfg.credentials["client_id"],
            "client_secret": cfg.credentials["client_secret"],
            "scope": "openid,AdobeID,read_organizations",
        },
    )
    token = await oauth_token(http, ID, cfg.credentials["ims_url"], lambda _: grant, fresh=fresh)
    return {"Authorization": f"Bearer {token}", "X-Api-Key": cfg.credentials["api_key"]}


def sample(tag: str, admin: Admin | None = None, **extra) -> dict:
    """A valid order for the demo, the drill and the tests, for a customer and offer the sandbox makes
    (``admin``), or made-up ones; ``tag`` is the external reference (its last 35 characters)."""
    customer = admin("adobe_vip/customers", {})["customerId"] if admin else "8000000001"
    offer = admin("adobe_vip/offers", {})["offerId"] if admin else "65000000001CA01A12"
    return sample_order(customer, offer, **{"externalReferenceId": tag[-35:], **extra})


def sample_order(customer_id: str, offer_id: str, **extra) -> dict:
    """A valid Adobe VIP Marketplace NEW order for a customer and offer made by the sandbox's admin API."""
    return {
        "customerId": customer_id,
        "externalReferenceId": "cart-81723",
        "orderType": "NEW",
        "lineItems": [{"extLineItemNumber": 1, "offerId": offer_id, "quantity": 3, "currencyCode": "USD"}],
        **extra,
    }
