"""battleface travel insurance (seed 003): ``POST /api/partner/orders/condensed/dynamic`` from a quote.

Auth: ``Authorization: Bearer <JWT>``. How partners obtain the JWT is not public; orderrelay asks the
configured token path with its client credentials (``ORDERRELAY_BATTLEFACE_TOKEN_PATH``) and renews it on a
401; a 401 with a fresh token is permanent. Success: 201 ``{"data": {...}}`` with ``order_number`` and
``items[].policy_number``. Errors: ``{"error": "<message>"}``; 400, 406 and 422 are permanent.
No idempotency key and no known lookup: a lost answer makes the order ``in_doubt``.
"""

from __future__ import annotations

from typing import Any

from orderrelay.foundation.options import ProviderSettings
from orderrelay.providers.auth import oauth_token
from orderrelay.providers.base import (
    Admin,
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
from orderrelay.schemas.battleface import OrderSchema  # noqa: F401 - part of the provider interface

ID = "battleface"
# ORDERRELAY_BATTLEFACE_<NAME>, with its default (None: required); _URL names are URLs, _PATH names start with /
SETTINGS: dict[str, str | None] = {
    "BASE_URL": "https://gateway.battleface.com",
    # How partners get their JWT is not public: the token path is the sandbox's choice until confirmed.
    "TOKEN_PATH": "/api/partner/auth/token",
    "CLIENT_ID": None,
    "CLIENT_SECRET": None,
}
SANDBOX = "orderrelay.sandbox.battleface"  # the module that simulates it
KEY = Key.NONE
KEY_TTL = None
LOOKUP = False
FRESH_HEADERS: tuple[str, ...] = ()
CARD_FIELDS: dict[str, bool] = {}
ERASE_WHEN_DONE: tuple[str, ...] = ()
FAILED_STATUSES: frozenset[str] = frozenset()
# "Pending" becomes Approved or Cancelled, but no read is documented: no follow-up reads its statuses.
KNOWN_STATUSES: frozenset[str] = frozenset()
wait, lookup, found, follow_up = no_wait, no_lookup, nothing_found, no_follow_up
ORDER_PATH = "/api/partner/orders/condensed/dynamic"


def request(order: dict, key: str, cfg: ProviderSettings) -> Request:
    """The dynamic order (no idempotency key exists to send)."""
    return Request("POST", ORDER_PATH, json=order, headers={"Accept": "application/json"})


def response(body: Any) -> Placed:
    """``data.order_number`` is the reference; the policy numbers stay in the recorded answer."""
    data = body["data"]
    return Placed(ref=str(data["order_number"]), status=data.get("status"), response=data)


def error(resp: Response) -> ErrorInfo:
    """``{"error": "<message>"}``."""
    body = resp.body
    if isinstance(body, dict) and body.get("error"):
        return ErrorInfo(message=str(body["error"]))
    return ErrorInfo(message=f"HTTP {resp.status}: {str(body)[:200]}")


async def authenticate(http: Any, cfg: ProviderSettings, *, fresh: bool) -> dict[str, str]:
    """A bearer JWT from the configured token path, renewed on a 401."""
    body = {"client_id": cfg.credentials["client_id"], "client_secret": cfg.credentials["client_secret"]}
    grant = Request("POST", cfg.credentials["token_path"], json=body)
    token = await oauth_token(http, ID, cfg.base_url, lambda _: grant, fresh=fresh)
    return {"Authorization": f"Bearer {token}"}


def sample(tag: str, admin: Admin | None = None, **extra) -> dict:
    """A valid order for the demo, the drill and the tests, for a quote (and a product, if none matches yet)
    the sandbox makes (``admin``), or a made-up one; each quote is ordered once."""
    quote = admin("battleface/quotes", {"premium": 20, "product": True})["quote_id"] if admin else None
    return sample_order(quote or "6388da3cf57124e1a8016b12", **({} if admin else {"premium": 20}), **extra)


def sample_order(quote_id: str, programid: int = 10, **extra) -> dict:
    """A valid battleface dynamic order for a quote made by the sandbox's admin API."""
    return {
        "quote_id": quote_id,
        "programid": programid,
        "hostcountrystate": "OH",
        "applicant": {
            "first_name": "John",
            "last_name": "Johnson",
            "dob": "1997-01-05",
            "email": "john@example.com",
            "country_code": "US",
            "state_code": "OH",
        },
        "start_at": "2027-12-05",
        "end_at": "2027-12-15",
        "currency_id": "USD",
        "destinations": [{"country_code": "FR"}],
        **extra,
    }
