"""Orders as people and programs see them: JSON-ready, card data masked. The CLI and the API share these."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from orderrelay.foundation.constants import SECRET_KEYS
from orderrelay.foundation.vault import mask
from orderrelay.foundation.walk import DESCEND, remap

ORDER_FIELDS = (
    "id",
    "provider",
    "status",
    "idempotency_key",
    "provider_ref",
    "provider_status",
    "attempt_count",
    "due_at",
    "created_at",
    "updated_at",
    "placed_at",
    "last_error",
    "errors",
)


def jsonable(value: Any) -> Any:
    """UUIDs and datetimes as strings, recursively."""

    def text(v: Any, key: Any) -> Any:
        return v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else DESCEND

    return remap(value, text)


def order_view(row: dict) -> dict:
    """The stable JSON shape of one order (``show --json``, the API): the request with card data masked."""
    view = {name: row.get(name) for name in ORDER_FIELDS}
    view["request"] = mask(row.get("request"), SECRET_KEYS)
    view["attempts"] = row.get("attempts", [])
    view["events"] = row.get("events", [])
    return jsonable(view)
