"""Order, attempt and event queries. Each function takes a connection; the caller owns the transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from orderrelay.foundation.errors import OrderNotFound
from orderrelay.store import queries


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def insert_order(
    conn: Connection,
    *,
    order_id: uuid.UUID | None = None,
    provider: str | None,
    status: str,
    request: dict,
    request_hash: str,
    idempotency_key: str | None,
    message_id: str | None,
    due_at: datetime | None,
    expected_at: datetime | None,
    reason: str,
    errors: dict | None = None,
    last_error: dict | None = None,
    received_at: datetime | None = None,
    notify: dict | None = None,
    claim_lease: float | None = None,
    producer: str | None = None,
    mark: bool = False,
) -> dict:
    """Insert a new order with its first event, or return the existing order for the same key or message.

    The result has ``id``, ``status``, ``created`` and, for an existing order, its ``request_hash``. With
    ``claim_lease`` a new order is claimed at once for that many seconds; the result is then a claim, as
    ``claim`` returns it (``mark``: as ``claim``'s).
    """
    claim = claim_lease is not None
    params = {
        "id": order_id or uuid.uuid4(),
        "provider": provider,
        "status": status,
        "idempotency_key": idempotency_key,
        "message_id": message_id,
        "provider_key": uuid.uuid4(),
        "request": Jsonb(request),
        "request_hash": request_hash,
        "errors": _json(errors),
        "last_error": _json(last_error),
        "due_at": due_at,
        "expected_at": expected_at,
        "reason": reason,
        "received_at": received_at,
        "notify": _json(notify),
        "claim": claim,
        "producer": producer,
        "claim_token": uuid.uuid4() if claim else None,
        "lease": claim_lease,
        "claim_reason": "claimed (attempt 1)",
        "mark": claim and mark,
    }
    row = conn.execute(queries.INSERT_ORDER, params).fetchone()
    if row is None:  # a unique key matched: the same job was seen before
        row = conn.execute(queries.FIND_DUPLICATE, params).fetchone()
    return row


def claim(
    conn: Connection, order_id: uuid.UUID, *, lease: float, reason: str, mark: bool = False, lookup: bool = False
) -> dict | None:
    """Claim a due order for one placement; None when it is not due, not placeable, or claimed by another.

    ``mark``: nothing stands between the claim and the create request, so the claim marks its attempt as sending,
    unless the order is uncertain at a provider with a ``lookup`` (which goes first); the claim's ``marked`` says."""
    params = {"id": order_id, "lease": lease, "claim_token": uuid.uuid4(), "reason": reason}
    return conn.execute(queries.CLAIM, {**params, "mark": mark, "lookup": lookup}).fetchone()


def mark_sending(conn: Connection, order_id: uuid.UUID, *, claim_token: uuid.UUID, attempt_id: int) -> bool:
    """Mark the attempt as sending its create request now (its connection is open), fenced by the claim; False: the
    worker must not send."""
    params = {"id": order_id, "claim_token": claim_token, "attempt_id": attempt_id}
    return conn.execute(queries.MARK_SENDING, params).fetchone() is not None


def unmark_sending(conn: Connection, attempt_id: int) -> None:
    """Nothing is being sent now: the create request was answered and made nothing and another will follow, or the
    request the claim marked must wait for a connection first."""
    conn.execute(queries.UNMARK_SENDING, {"attempt_id": attempt_id})


def finish_attempt(
    conn: Connection,
    *,
    order_id: uuid.UUID,
    claim_token: uuid.UUID,
    attempt_id: int,
    outcome: str,
    to_status: str,
    reason: str,
    http_status: int | None = None,
    latency_ms: float | None = None,
    error: dict | None = None,
    provider_ref: str | None = None,
    provider_status: str | None = None,
    response: dict | None = None,
    due_at: datetime | None = None,
    expected_at: datetime | None = None,
    request: dict | None = None,
    attempt_key: str | None = None,
    next_key: str | None = None,
    key_sent: bool = False,
) -> bool:
    """Record an attempt's result and move the order on; False when the claim was lost meanwhile.

    ``attempt_key``: the key the attempt's create request carried; ``next_key``: a new key for the next request
    (a per-answer key renewed); ``key_sent``: a create request went out with the order's current key.
    """
    row = conn.execute(
        queries.FINISH_ATTEMPT,
        {
            "attempt_key": attempt_key,
            "next_key": next_key,
            "key_sent": key_sent,
            "id": order_id,
            "claim_token": claim_token,
            "attempt_id": attempt_id,
            "outcome": outcome,
            "to_status": to_status,
            "reason": reason,
            "http_status": http_status,
            "latency_ms": latency_ms,
            "error": _json(error),
            "provider_ref": provider_ref,
            "provider_status": provider_status,
            "response": _json(response),
            "due_at": due_at,
            "expected_at": expected_at,
            "request": _json(request),
        },
    ).fetchone()
    return row is not None


def transition(
    conn: Connection,
    order_id: uuid.UUID,
    *,
    from_statuses: tuple[str, ...],
    to_status: str,
    reason: str,
    due_at: datetime | None = None,
    expected_at: datetime | None = None,
) -> str | None:
    """Move an order from one of ``from_statuses`` to ``to_status``; returns the old status, or None."""
    row = conn.execute(
        queries.TRANSITION,
        {
            "id": order_id,
            "from_statuses": list(from_statuses),
            "to_status": to_status,
            "reason": reason,
            "due_at": due_at,
            "expected_at": expected_at,
        },
    ).fetchone()
    return row["from_status"] if row else None


def take_follow_ups(conn: Connection, *, limit: int = 200) -> list[dict]:
    """Placed orders whose provider status may still change, least recently read first, taken for this run."""
    return conn.execute(queries.FOLLOW_UPS, {"limit": limit}).fetchall()


def follow_up_troubles(conn: Connection) -> dict[str, int]:
    """Pending placed orders whose last follow-up read failed (``follow_up``) or that are past the follow-up
    deadline (``follow_up_overdue``), by kind."""
    counts = {r["kind"]: r["n"] for r in conn.execute(queries.FOLLOW_UP_TROUBLES)}
    return {"follow_up": counts.get("follow_up", 0), "follow_up_overdue": counts.get("follow_up_overdue", 0)}


def record_provider_status(
    conn: Connection,
    order_id: uuid.UUID,
    *,
    from_status: str | None,
    provider_status: str | None,
    response: dict,
    to_status: str,
    reason: str,
    error: dict | None = None,
) -> bool:
    """A placed order's new status at the provider (and ours, if the provider failed it), with its event; False
    if the order no longer has ``from_status`` (another run recorded the change first)."""
    row = conn.execute(
        queries.RECORD_PROVIDER_STATUS,
        {
            "id": order_id,
            "from_status": from_status,
            "provider_status": provider_status,
            "response": Jsonb(response),
            "to_status": to_status,
            "reason": reason,
            "error": _json(error),
        },
    ).fetchone()
    return row is not None


def follow_up_trouble(conn: Connection, order_id: uuid.UUID, *, error: dict | None, reason: str) -> None:
    """What a follow-up could not learn, as the order's last error (None: it is resolved), with an event if new."""
    conn.execute(queries.FOLLOW_UP_TROUBLE, {"id": order_id, "error": _json(error), "reason": reason})


def sweep_due(conn: Connection, *, grace: float, limit: int = 1000) -> list[tuple[uuid.UUID, str]]:
    """Due orders with no message on its way; marks them as sent for now; returns (id, provider) of each."""
    return [(r["id"], r["provider"]) for r in conn.execute(queries.SWEEP_DUE, {"grace": grace, "limit": limit})]


def expired_leases(conn: Connection, *, limit: int = 1000) -> list[dict]:
    """Orders whose placing worker went away without finishing (its lease ran out), with ``key_sent_at``."""
    return conn.execute(queries.EXPIRED_LEASES, {"limit": limit}).fetchall()


def recover_lease(
    conn: Connection, order_id: uuid.UUID, *, to_status: str, due_at: datetime | None, reason: str
) -> str | None:
    """Take back an expired claim (unless its worker renewed it meanwhile): its attempt, if it was marked as sending,
    may have made the order (``to_status``, ``due_at`` and ``reason`` apply), else it made nothing (the order is
    queued again). Returns the order's new status, or None when the claim was not taken back."""
    row = conn.execute(
        queries.RECOVER_LEASE, {"id": order_id, "to_status": to_status, "due_at": due_at, "reason": reason}
    ).fetchone()
    return row["to_status"] if row else None


def renew_leases(conn: Connection, claims: list[tuple[uuid.UUID, uuid.UUID]], *, lease: float) -> set[uuid.UUID]:
    """Extend the leases of (order id, claim token) pairs still held; returns the order ids still held."""
    if not claims:
        return set()
    ids, tokens = zip(*claims, strict=True)
    rows = conn.execute(queries.RENEW_LEASES, {"ids": list(ids), "tokens": list(tokens), "lease": lease})
    return {row["id"] for row in rows}


def late_answer(
    conn: Connection,
    *,
    order_id: uuid.UUID,
    attempt_id: int,
    outcome: str,
    reason: str,
    http_status: int | None = None,
    latency_ms: float | None = None,
    error: dict | None = None,
    attempt_key: str | None = None,
    provider_ref: str | None = None,
    provider_status: str | None = None,
    response: dict | None = None,
    request: dict | None = None,
    never_sent: bool = False,
) -> dict:
    """Record what a worker learnt after its claim was taken (see ``queries.LATE_ANSWER``); returns the order's
    status before, its reference before, whether it notifies, and ``placed_from`` / ``requeued`` when it moved."""
    return conn.execute(
        queries.LATE_ANSWER,
        {
            "id": order_id,
            "attempt_id": attempt_id,
            "outcome": outcome,
            "reason": reason,
            "http_status": http_status,
            "latency_ms": latency_ms,
            "error": _json(error),
            "attempt_key": attempt_key,
            "provider_ref": provider_ref,
            "provider_status": provider_status,
            "response": _json(response),
            "request": _json(request),
            "never_sent": never_sent,
        },
    ).fetchone()


def recorded_messages(conn: Connection, message_ids: list[str]) -> list[str]:
    """The message ids among these that jobs taken in (orders, or rejected ones) already carry."""
    return [r["message_id"] for r in conn.execute(queries.RECORDED_MESSAGES, {"ids": message_ids})]


def ref_owners(conn: Connection, provider: str, refs: list[str], *, besides: uuid.UUID) -> set[str]:
    """The references among ``refs`` that orders other than ``besides`` already hold."""
    rows = conn.execute(queries.REF_OWNERS, {"provider": provider, "refs": refs, "id": besides})
    return {row["provider_ref"] for row in rows}


ANY_PRODUCER = object()  # an operator's view: every producer's orders


def get_order(
    conn: Connection, order_id: uuid.UUID | str | None = None, *, key: str | None = None, producer: Any = ANY_PRODUCER
) -> dict:
    """One order with its attempts and events, by id or by the producer's idempotency key. With ``producer`` (an
    API key's name), only that producer's orders are found: another's is "no order", as if it did not exist."""
    everyone = producer is ANY_PRODUCER
    if key is not None:
        mine = {"key": key, "all": everyone, "producer": None if everyone else producer}
        row = conn.execute(queries.GET_ORDER_BY_KEY, mine).fetchone()
    else:
        try:
            row = conn.execute(queries.GET_ORDER, {"id": uuid.UUID(str(order_id))}).fetchone()
        except ValueError:
            row = None
        if row is not None and not everyone and row["producer"] != producer:
            row = None
    if row is None:
        raise OrderNotFound(f"no order with {'key' if key is not None else 'id'} {key or order_id!s}")
    row["attempts"] = conn.execute(queries.ORDER_ATTEMPTS, {"id": row["id"]}).fetchall()
    row["events"] = conn.execute(queries.ORDER_EVENTS, {"id": row["id"]}).fetchall()
    return row


def resolve_id(conn: Connection, given: str) -> uuid.UUID:
    """The order id that ``given`` is, or is the unique prefix of (``865acf50``, as ``list`` prints it); ValueError
    for what is no id or prefix, OrderNotFound for no order or more than one."""
    digits = given.strip().lower().replace("-", "")
    if not 1 <= len(digits) <= 32 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"{given!r} is not an order id or the start of one")
    if len(digits) == 32:
        return uuid.UUID(digits)
    low, high = uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))
    rows = conn.execute(queries.ORDER_IDS_BETWEEN, {"low": low, "high": high}).fetchall()
    if not rows:
        raise OrderNotFound(f"no order with an id starting {given}")
    if len(rows) > 1:
        raise OrderNotFound(f"more than one order has an id starting {given}: give more of it")
    return rows[0]["id"] if isinstance(rows[0], dict) else rows[0][0]


def list_orders(
    conn: Connection,
    *,
    status: str | None = None,
    provider: str | None = None,
    limit: int = 100,
    offset: int = 0,
    producer: Any = ANY_PRODUCER,
) -> list[dict]:
    """Newest orders first, filtered by status and provider (and to one producer's, with ``producer``)."""
    everyone = producer is ANY_PRODUCER
    params = {"status": status, "provider": provider, "limit": limit, "offset": offset}
    params |= {"all": everyone, "producer": None if everyone else producer}
    return conn.execute(queries.LIST_ORDERS, params).fetchall()


def defer(
    conn: Connection,
    order_id: uuid.UUID,
    *,
    claim_token: uuid.UUID,
    attempt_id: int,
    to_status: str,
    seconds: float,
    expected: bool,
    reason: str,
) -> bool:
    """Give a claim back unused (nothing was sent): due again in ``seconds`` (on Postgres's clock), its message
    ``expected`` then (a countdown) or not (the sweep's); False when the claim was lost."""
    row = conn.execute(
        queries.DEFER,
        {
            "id": order_id,
            "claim_token": claim_token,
            "attempt_id": attempt_id,
            "to_status": to_status,
            "seconds": seconds,
            "expected": expected,
            "reason": reason,
        },
    ).fetchone()
    return row is not None


def postpone(conn: Connection, order_id: uuid.UUID, *, seconds: float, expected: bool, reason: str) -> str | None:
    """Make a due order, not claimed, due again in ``seconds`` (its limits hold it back); its status, or None when it
    was not due (or was taken)."""
    params = {"id": order_id, "seconds": seconds, "expected": expected, "reason": reason}
    row = conn.execute(queries.POSTPONE, params).fetchone()
    return row["to_status"] if row else None


def wake(conn: Connection, order_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Make these orders (waiting for a seat) due now; the ones that still wait to be placed."""
    return [r["id"] for r in conn.execute(queries.WAKE, {"ids": order_ids})]


def provider_of(conn: Connection, order_id: uuid.UUID) -> str | None:
    row = conn.execute(queries.PROVIDER_OF, {"id": order_id}).fetchone()
    return row["provider"] if row else None


def requeue(
    conn: Connection,
    order_id: uuid.UUID,
    *,
    from_statuses: tuple[str, ...],
    reason: str,
    round_step: int = 0,
    expected_at: datetime | None = None,
    settle: bool = False,
) -> dict | None:
    """Queue an order for a new round of attempts (same idempotency key); None if its status does not allow it.

    ``settle``: someone checked that the provider holds nothing: earlier attempts no longer make the order
    uncertain, and it gets a new key.
    """
    return conn.execute(
        queries.REQUEUE,
        {
            "settle": settle,
            "id": order_id,
            "from_statuses": list(from_statuses),
            "reason": reason,
            "round_step": round_step,
            "expected_at": expected_at,
        },
    ).fetchone()


def resolve(conn: Connection, order_id: uuid.UUID, *, to_status: str, provider_ref: str | None, reason: str) -> bool:
    """Settle an in-doubt order by hand; False if it is not in doubt."""
    row = conn.execute(
        queries.RESOLVE, {"id": order_id, "to_status": to_status, "provider_ref": provider_ref, "reason": reason}
    ).fetchone()
    return row is not None


def requeue_rounds(conn: Connection, *, rounds: int, interval: float, limit: int = 500) -> list[dict]:
    """Queue the next scheduled round of failed orders that certainly made nothing (see ``REQUEUE_ROUNDS``)."""
    params = {"rounds": rounds, "interval": interval, "limit": limit}
    return conn.execute(queries.REQUEUE_ROUNDS, params).fetchall()


def record_circuit(conn: Connection, provider: str, worker: str, circuit: Any, open_until: datetime | None) -> None:
    """A worker's breaker for a provider changed state: keep it where operators can see it."""
    conn.execute(
        queries.RECORD_CIRCUIT,
        {
            "provider": provider,
            "worker": worker,
            "state": circuit.state,
            "failures": circuit.failures,
            "open_until": open_until,
            "reason": f"{circuit.failures} failures in a row" if circuit.failures else None,
        },
    )


def circuits(conn: Connection) -> list[dict]:
    return conn.execute(queries.CIRCUITS).fetchall()


def counts(conn: Connection) -> list[dict]:
    """How many orders each provider has in each status (from the maintained totals), and the oldest last change
    among those still waiting for something (None for end states)."""
    conn.execute(queries.FOLD_ORDER_TOTALS)
    totals = conn.execute(queries.ORDER_TOTALS).fetchall()
    probes = conn.execute(queries.OLDEST_OPEN, {"providers": sorted({r["provider"] for r in totals} - {""})})
    oldest = {(r["provider"], r["status"]): r["oldest"] for r in probes}
    rows = [{"provider": r["provider"] or None, "status": r["status"], "n": r["n"]} for r in totals]
    for row in rows:
        row["oldest"] = oldest.get((row["provider"], row["status"]))
    return sorted(rows, key=lambda r: (r["provider"] is None, r["provider"] or "", r["status"]))


def attempt_totals(conn: Connection) -> tuple[list[float], list[dict]]:
    """The histogram's bounds (ms) and the attempts by provider, outcome and latency bucket (``le``)."""
    conn.execute(queries.FOLD_ATTEMPT_TOTALS)
    bounds = conn.execute(queries.LATENCY_BOUNDS).fetchone()["bounds"]
    return bounds, conn.execute(queries.ATTEMPT_TOTALS).fetchall()


def oldest_due(conn: Connection) -> datetime | None:
    """The due time of the oldest waiting order (the first entry of the index of due orders)."""
    return conn.execute(queries.OLDEST_DUE).fetchone()["due_at"]


def fold_totals(conn: Connection) -> None:
    """Fold the deltas written since the last fold into the totals (the sweep does, so they stay few)."""
    conn.execute(queries.FOLD_ORDER_TOTALS)
    conn.execute(queries.FOLD_ATTEMPT_TOTALS)


def sealed_orders(conn: Connection, *, after: uuid.UUID, limit: int = 500) -> list[dict]:
    """Orders whose stored request holds sealed card data, in id order after ``after``."""
    return conn.execute(queries.SEALED_ORDERS, {"after": after, "limit": limit}).fetchall()


def card_data_due_for_erasure(conn: Connection, *, retention: float, after: uuid.UUID, limit: int = 500) -> list[dict]:
    """Ended orders still holding sealed card data ``retention`` seconds after their last change, by id."""
    params = {"retention": retention, "after": after, "limit": limit}
    return conn.execute(queries.CARD_DATA_DUE_FOR_ERASURE, params).fetchall()


def erase_card_data(conn: Connection, order_id: uuid.UUID, request: dict) -> None:
    """Store the order's request with its card data erased; it no longer counts as holding any."""
    conn.execute(queries.ERASE_CARD_DATA, {"id": order_id, "request": Jsonb(request)})


def erase_request_paths(conn: Connection, order_id: uuid.UUID, paths: tuple[str, ...]) -> None:
    """Remove fields (dotted paths, such as the CVC's ``payment.cvc``) from an order's stored request."""
    for path in paths:
        conn.execute(queries.ERASE_REQUEST_PATH, {"id": order_id, "path": path.split(".")})


def set_request(conn: Connection, order_id: uuid.UUID, request: dict) -> None:
    conn.execute(queries.SET_REQUEST, {"id": order_id, "request": Jsonb(request)})


def recent_failures(conn: Connection, *, limit: int = 10) -> list[dict]:
    """The latest failed and in-doubt orders."""
    return conn.execute(queries.RECENT_FAILURES, {"limit": limit}).fetchall()
