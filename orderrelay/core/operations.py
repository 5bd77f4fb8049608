"""What operators (and the retry schedule) do to orders: cancel, retry, resolve. Each is an event with its reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from orderrelay import providers
from orderrelay.config.settings import get_settings
from orderrelay.foundation.constants import Status
from orderrelay.foundation.errors import ActionRefused
from orderrelay.providers import policy
from orderrelay.store import notifications
from orderrelay.store import orders as store

CANCELABLE = (Status.WAITING, Status.QUEUED, Status.RETRYING, Status.FAILED)
RETRYABLE = (Status.FAILED, Status.IN_DOUBT)

_WHY_NOT_CANCEL = {
    Status.PLACED: "it was placed with the provider; cancel it there",
    Status.PLACING: "a worker is placing it right now; look again in a moment",
    Status.IN_DOUBT: "the provider may have it; settle it with `orderrelay resolve`",
    Status.REJECTED: "it was rejected and never sent",
    Status.CANCELED: "it is already canceled",
}


def cancel(conn, order_id: uuid.UUID | str, *, reason: str = "canceled by an operator") -> str:
    """Cancel a waiting, queued, retrying or failed order: the provider is then never called."""
    order_id = uuid.UUID(str(order_id))
    order = store.get_order(conn, order_id)
    current = order["status"]
    if store.transition(conn, order_id, from_statuses=CANCELABLE, to_status=Status.CANCELED, reason=reason) is None:
        why = _WHY_NOT_CANCEL.get(current, f"its status is {current}")
        raise ActionRefused(f"order {order_id} cannot be canceled: {why}")
    _erase_cvc(conn, order)
    notifications.add(conn, order_id, deadline=get_settings().notify_deadline)
    return Status.CANCELED


def retry(
    conn, order_id: uuid.UUID | str, *, reason: str = "retried by an operator", checked_by: str | None = None
) -> str:
    """Queue a failed or in-doubt order for a new round of attempts, with the same idempotency key.

    An in-doubt order is looked up first, or resent with a key the provider still replays. Where the provider has
    neither, a resend is blind and could place the order twice: it needs ``checked_by``, who checked with the
    provider that it holds nothing. That settles the order's earlier attempts and gives it a new key.
    """
    order_id = uuid.UUID(str(order_id))
    order = store.get_order(conn, order_id)
    current = order["status"]
    blind = current == Status.IN_DOUBT and not policy.resend_safe(
        providers.get(order["provider"]), order["key_sent_at"], datetime.now(UTC)
    )
    if blind and not checked_by:
        raise ActionRefused(
            f"order {order_id} cannot be retried blindly: {order['provider']} may hold it and offers no lookup or "
            "key that would tell; check with the provider, then retry with --checked-by NAME (or resolve it)"
        )
    if current == Status.FAILED and order["provider_ref"]:
        raise ActionRefused(
            f"order {order_id} cannot be retried: {order['provider']} made it ({order['provider_ref']}) and then "
            "failed it; sending it again would only replay that order. Send a new job for a new order"
        )
    if checked_by:
        reason = f"{reason}; {checked_by} checked with {order['provider']}: it holds no such order"
    row = store.requeue(conn, order_id, from_statuses=RETRYABLE, reason=reason, settle=bool(checked_by))
    if row is None:
        raise ActionRefused(f"order {order_id} cannot be retried: its status is {current} (only failed or in_doubt)")
    return row["provider"]


def resolve(conn, order_id: uuid.UUID | str, *, placed_ref: str | None, reason: str) -> str:
    """Settle an in-doubt order: placed (with the provider's reference) or failed."""
    order_id = uuid.UUID(str(order_id))
    to_status = Status.PLACED if placed_ref else Status.FAILED
    if not store.resolve(conn, order_id, to_status=to_status, provider_ref=placed_ref, reason=reason):
        current = store.get_order(conn, order_id)["status"]
        raise ActionRefused(f"order {order_id} cannot be resolved: it is {current}, not in_doubt")
    _erase_cvc(conn, store.get_order(conn, order_id))
    notifications.add(conn, order_id, deadline=get_settings().notify_deadline)
    return to_status


def _erase_cvc(conn, order: dict) -> None:
    """An order that ended by an operator's hand keeps no CVC (the card number stays sealed, for retention)."""
    if order["provider"] in providers.REGISTRY:
        store.erase_request_paths(conn, order["id"], providers.get(order["provider"]).ERASE_WHEN_DONE)


def retry_failed_rounds(conn, *, rounds: int, interval: float) -> list[tuple[uuid.UUID, str]]:
    """Requeue failed orders that certainly made nothing for their next scheduled round (never one an operator
    resolved, never past the last round, however many runs overlap)."""
    return [(row["id"], row["provider"]) for row in store.requeue_rounds(conn, rounds=rounds, interval=interval)]


def rotate_keys(conn, vault, *, on_batch=lambda n: None) -> int:
    """Seal every stored card value again with the newest key; returns how many orders were rewritten."""
    from orderrelay.foundation.vault import reseal_all

    done, after = 0, uuid.UUID(int=0)
    while rows := store.sealed_orders(conn, after=after):
        with conn.transaction():
            for row in rows:
                store.set_request(conn, row["id"], reseal_all(vault, row["request"]))
        done += len(rows)
        after = rows[-1]["id"]
        on_batch(len(rows))
    return done


def erase_card_data(conn, *, retention: float) -> int:
    """Erase the sealed card data of orders that ended ``retention`` seconds ago (the last four digits stay)."""
    from orderrelay.foundation.vault import erase_sealed

    erased, after = 0, uuid.UUID(int=0)
    while rows := store.card_data_due_for_erasure(conn, retention=retention, after=after):
        with conn.transaction():
            for row in rows:
                store.erase_card_data(conn, row["id"], erase_sealed(row["request"]))
        erased += len(rows)
        after = rows[-1]["id"]  # onward by id: a run ends whatever the rows hold
    return erased
