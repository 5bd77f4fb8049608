"""Chaiz vehicle service contracts (seed 000): a complete order with card payment, for plans from a plan search.

Auth: a long-lived partner JWT, ``Authorization: Bearer``; a 401 cannot be cured by a new token.
Every answer is wrapped: ``{"response": <body|null>, "errorResponse": {"errors": [{"errorMessage",
"errorField", "errorCode", "errorNumber", "suggestions"}]}}``; the error numbers are kept.
No idempotency key and no known lookup: a lost answer makes the order ``in_doubt``, never a blind resend.
Card fields (``payment.accountNumber``, ``payment.cvc``) are sealed at rest; the CVC is erased when done.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orderrelay.foundation.errors import AuthError, PermanentError
from orderrelay.foundation.options import ProviderSettings
from orderrelay.providers.base import (
    TEST_CARD,
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
from orderrelay.schemas.chaiz import OrderSchema  # noqa: F401 - part of the provider interface

ID = "chaiz"
# ORDERRELAY_CHAIZ_<NAME>, with its default (None: required); _URL names are URLs, _PATH names start with /
SETTINGS: dict[str, str | None] = {
    "BASE_URL": "https://chaiz-api-uat.azurewebsites.net",
    # Chaiz's create-order path is not public (it sits among /api/v2/Partners/...): set it per contract.
    "ORDER_PATH": "/api/v2/Partners/CreateCompleteOrder",
    "TOKEN": None,
}
SANDBOX = "orderrelay.sandbox.chaiz"  # the module that simulates it
KEY = Key.NONE
KEY_TTL = None
LOOKUP = False
FRESH_HEADERS: tuple[str, ...] = ()
CARD_FIELDS = {"payment.accountNumber": True, "payment.cvc": False}
ERASE_WHEN_DONE = ("payment.cvc",)
FAILED_STATUSES: frozenset[str] = frozenset()
KNOWN_STATUSES: frozenset[str] = frozenset()  # no follow-up reads its statuses
wait, lookup, found, follow_up = no_wait, no_lookup, nothing_found, no_follow_up


def request(order: dict, key: str, cfg: ProviderSettings) -> Request:
    """The complete-order call at the configured path (Chaiz has no idempotency key to send)."""
    return Request("POST", cfg.credentials["order_path"], json=order, headers={"Accept": "application/json"})


def _errors(body: Any) -> list[dict]:
    if isinstance(body, dict) and isinstance(body.get("errorResponse"), dict):
        errors = body["errorResponse"].get("errors")
        return errors if isinstance(errors, list) else []
    return []


def response(body: Any) -> Placed:
    """The unwrapped order; a 2xx whose ``response`` is null but carries errors is a refusal."""
    inner = body.get("response") if isinstance(body, dict) else None
    if not isinstance(inner, dict):
        info = _info(body, "Chaiz answered without an order")
        raise PermanentError(info.message, code=info.code, details=info.details)
    return Placed(ref=str(inner["orderId"]), status=inner.get("status"), response=inner)


def _info(body: Any, fallback: str) -> ErrorInfo:
    errors = _errors(body)
    if not errors:
        return ErrorInfo(message=fallback if not isinstance(body, str) else f"{fallback}: {body[:200]}")
    message = "; ".join(
        f"{e.get('errorMessage')}" + (f" ({e['errorField']})" if e.get("errorField") else "") for e in errors
    )
    first = errors[0]
    code = " ".join(str(first[k]) for k in ("errorNumber", "errorCode") if first.get(k) is not None) or None
    return ErrorInfo(message=message, code=code, details=errors)


def error(resp: Response) -> ErrorInfo:
    """Chaiz's wrapped errors: every message with its field, the first error's number and code."""
    return _info(resp.body, f"HTTP {resp.status}")


async def authenticate(http: Any, cfg: ProviderSettings, *, fresh: bool) -> dict[str, str]:
    """The partner's long-lived token; when Chaiz refuses it, only a new configured token helps."""
    if fresh:
        raise AuthError("Chaiz refused the configured partner token (ORDERRELAY_CHAIZ_TOKEN)", status=401)
    return {"Authorization": f"Bearer {cfg.credentials['token']}"}


def sample(tag: str, admin: Admin | None = None, **extra) -> dict:
    """A valid order for the demo, the drill and the tests, on a plan the sandbox makes (``admin``), or on made-up
    ids; ``tag`` is the customer's external id."""
    plan = admin("chaiz/plans", {}) if admin else {"searchResultPlanId": 100_001, "addons": [100_002]}
    order = sample_order(plan["searchResultPlanId"], plan["addons"][:1], **extra)
    order["userDetails"]["externalId"] = tag
    return order


def sample_order(plan_id: int, addon_ids: list[int] | None = None, **extra) -> dict:
    """A valid Chaiz complete order for a plan id (and add-ons) made by the sandbox's admin API."""
    return {
        "payment": {
            "accountNumber": TEST_CARD,
            "creditCardExpirationDateString": f"12/{datetime.now(UTC).year + 2}",
            "methodType": "VISA",
            "paymentOption": "Full",
            "cvc": "123",
        },
        "searchResultPlanIds": [plan_id],
        "userDetails": {
            "address": "12 Analytical St",
            "city": "Boston",
            "email": "ada@example.com",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "state": "MA",
            "zip": "02108",
            "phoneNumber": "6175550100",
            "externalId": "customer-81723",
        },
        "selectedAddonIds": addon_ids or [],
        "device": "Desktop",
        **extra,
    }
