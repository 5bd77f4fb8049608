"""Sending jobs from Python: card fields sealed before the message leaves the process, a repr without order data."""

from __future__ import annotations

from typing import Any

import providers
from orderrelay.constants import TASK_SUBMIT
from orderrelay.vault import Vault, seal_fields


def send(
    app: Any,
    vault: Vault,
    provider: str,
    order: Any,
    *,
    idempotency_key: str | None = None,
    not_before: str | None = None,
) -> str:
    """Publish an ``orders.submit`` message; returns the message id. Flower and logs see only provider and key."""
    if provider in providers.REGISTRY and isinstance(order, dict):
        order = seal_fields(vault, order, providers.get(provider).CARD_FIELDS)
    kwargs: dict[str, Any] = {"provider": provider, "order": order, "idempotency_key": idempotency_key}
    if not_before is not None:
        kwargs["not_before"] = not_before
    shown = repr({"provider": provider, "idempotency_key": idempotency_key})
    return app.send_task(TASK_SUBMIT, kwargs=kwargs, argsrepr="()", kwargsrepr=shown).id
