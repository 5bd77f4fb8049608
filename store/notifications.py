"""Outcome notifications: one row per end state of an order that names a target, one row per delivery attempt."""

from __future__ import annotations

import uuid

from psycopg import Connection

from orderrelay.store import queries


def add(conn: Connection, order_id: uuid.UUID, *, deadline: float) -> int | None:
    """A notification of the order's current state, if the order names a target; its id."""
    row = conn.execute(
        queries.ADD_NOTIFICATION, {"event_id": uuid.uuid4(), "order_id": order_id, "deadline": deadline}
    ).fetchone()
    return row["id"] if row else None


def due(conn: Connection, *, resend_after: float, limit: int = 200) -> list[int]:
    """Pending notifications due now, each the oldest pending one of its order, with no delivery message sent in
    the last ``resend_after`` seconds; marks them as sent."""
    params = {"limit": limit, "resend_after": resend_after}
    return [r["id"] for r in conn.execute(queries.DUE_NOTIFICATIONS, params)]


def claim(conn: Connection, notification_id: int, *, lease: float) -> dict | None:
    """Take one delivery for ``lease`` seconds; None if it is not due, done, or an earlier one is pending."""
    return conn.execute(queries.CLAIM_NOTIFICATION, {"id": notification_id, "lease": lease}).fetchone()


def record(
    conn: Connection,
    notification_id: int,
    *,
    claim_token: uuid.UUID,
    delivered: bool,
    retry_in: float,
    http_status: int | None,
    latency_ms: float | None,
    error: str | None,
) -> bool:
    """One delivery attempt: delivered, or due again in ``retry_in`` seconds (expired past the deadline); False when
    the try no longer held the delivery (its result is logged, not counted)."""
    return conn.execute(
        queries.RECORD_NOTIFICATION_ATTEMPT,
        {
            "id": notification_id,
            "claim_token": claim_token,
            "delivered": delivered,
            "retry_in": retry_in,
            "http_status": http_status,
            "latency_ms": latency_ms,
            "error": error,
        },
    ).fetchone()["recorded"]


def of_order(conn: Connection, order_id: uuid.UUID) -> list[dict]:
    return conn.execute(queries.ORDER_NOTIFICATIONS, {"order_id": order_id}).fetchall()


def redeliver_latest(conn: Connection, order_id: uuid.UUID, *, deadline: float) -> int | None:
    row = conn.execute(queries.REDELIVER_LATEST, {"order_id": order_id, "deadline": deadline}).fetchone()
    return row["id"] if row else None
