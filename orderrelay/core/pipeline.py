"""The order pipeline as plain functions: intake (validate, record), place (claim, call, record), sweep.

Tasks call these with the process's runtime (database pool, HTTP session, event loop) and publish the
follow-up messages these functions ask for. Nothing here talks to the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from orderrelay import providers
from orderrelay.config.settings import Settings
from orderrelay.core import pending
from orderrelay.core.envelope import Job, NotifyRules, fingerprint_of, rejected_target, validate_job
from orderrelay.core.leases import Leases, Marks
from orderrelay.core.limits import SHORTEST_DEFER, Pass, SharedLimits
from orderrelay.foundation.breaker import Guard
from orderrelay.foundation.constants import Outcome, Status
from orderrelay.foundation.errors import (
    ClaimLost,
    HeldBack,
    InDoubtError,
    JobInvalid,
    PermanentError,
    ProviderError,
    RetryableError,
)
from orderrelay.foundation.ids import order_id_for
from orderrelay.foundation.logs import order_fields
from orderrelay.foundation.vault import Vault, erase_fields, open_fields
from orderrelay.providers import http as provider_http
from orderrelay.providers import policy
from orderrelay.providers.base import Placed
from orderrelay.providers.policy import Call, Decision
from orderrelay.schemas.hostile import MAX_STRING, clean_text, redact_text, storable, stored_job
from orderrelay.store import notifications
from orderrelay.store import orders as store
from orderrelay.store.db import TRANSIENT_ERRORS, VALUE_ERRORS

log = logging.getLogger("orderrelay.core.pipeline")


class Runtime(Protocol):
    """What the pipeline needs from its process: settings, a database pool, an HTTP client, an event loop."""

    settings: Settings
    db: Any
    http: provider_http.Http
    vault: Vault
    guard: Guard
    leases: Leases
    marks: Marks
    limits: SharedLimits
    notes: Any  # the Redis client of orderrelay.core.pending, or None
    name: str

    def run(self, coro: Any) -> Any: ...


# Next.status when this worker has nothing to do with the order: another holds its claim, or nothing is due yet.
# Not an order's status (those are Status's): the order keeps the one it has.
UNCLAIMED = "unclaimed"


@dataclass(frozen=True)
class Next:
    """What should happen to an order now: place it here, send a delayed message, or nothing."""

    order_id: uuid.UUID
    status: str  # a Status, or UNCLAIMED
    place_now: bool = False
    countdown: float | None = None
    provider: str | None = None  # its queue, when a message is to be sent
    created: bool = False  # intake: a new order (not one found by its key or message)
    conflict: bool = False  # intake: the key was used before with another body
    notification: int | None = None  # an outcome notification to deliver now
    claim: dict | None = None  # intake: the new order was claimed as it was recorded; ``attempt`` places it
    wake: tuple[uuid.UUID, ...] = ()  # orders of ``provider`` waiting for a seat that may call now: a message each


def _now() -> datetime:
    return datetime.now(UTC)


def _schedule(rt: Runtime, order_id: uuid.UUID, status: str, due_at: datetime | None, provider: str) -> Next:
    if status not in (Status.WAITING, Status.QUEUED, Status.RETRYING) or due_at is None:
        return Next(order_id, status)
    delay = (due_at - _now()).total_seconds()
    if delay <= 0 and status == Status.QUEUED:
        return Next(order_id, status, place_now=True, provider=provider)
    if delay <= rt.settings.countdown_horizon:
        return Next(order_id, status, countdown=max(0.0, delay), provider=provider)
    return Next(order_id, status)  # a long wait: the sweep sends it when it is due


@dataclass(frozen=True)
class Origin:
    """Where a job came from: its message's id (from the broker), the API key's name (from the API)."""

    message_id: str | None = None
    producer: str | None = None


def intake(
    rt: Runtime,
    job: Any,
    *,
    message_id: str | None = None,
    producer: str | None = None,
    claim: bool = False,
    give_up: bool = False,
) -> Next:
    """Validate a job and record it as an order (or a rejected one). A repeated key or message adds no row.

    Every job ends as a row, whatever its bytes: an error of ours while taking it in is recorded as a rejected
    order with a redacted ``intake_error`` (and logged with its traceback). A service error (Postgres away) is
    raised for the task to retry later, unless ``give_up``: a message that has failed so many times that it is
    itself the cause (a poison message) is then recorded as rejected too, so it cannot loop forever.

    With ``claim`` (a worker that places the order next), an order due now is claimed in the statement that
    records it: the result carries the claim for ``attempt``, and placing it costs no second round trip.
    """
    origin = Origin(_storable_message_id(message_id), producer)
    try:
        return _take_in(rt, job, origin, claim=claim)
    except TRANSIENT_ERRORS as exc:
        if not give_up:
            raise
        log.error("a job kept failing with %s; recording it as rejected so it is not retried forever", exc)
        return _failed_intake(rt, job, origin, exc, "it kept failing with a service error")
    except Exception as exc:
        log.exception("could not take a job in; recording it as rejected (an error of orderrelay's)")
        return _failed_intake(rt, job, origin, exc, "an error of orderrelay's, logged with its traceback")


def record_unreadable(
    rt: Runtime, body: bytes | str, why: str, *, message_id: str | None = None, producer: str | None = None
) -> Next:
    """A job whose message (or HTTP body) cannot even be read as JSON: kept as a rejected order, its head only."""
    head = body[:2000].decode("utf-8", "replace") if isinstance(body, bytes) else str(body)[:2000]
    errors = {"_message": [f"Not a readable JSON job: {why}."]}
    origin = Origin(_storable_message_id(message_id), producer)
    return _reject(rt, {"_unreadable": head}, JobInvalid(errors), origin, key=None)


def _storable_message_id(message_id: Any) -> str | None:
    """A message id as it can be stored and compared: a hostile one (NUL, a lone surrogate, huge) by its hash."""
    if message_id is None:
        return None
    text = str(message_id)
    if len(text) <= 200 and clean_text(text) == text:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _failed_intake(rt: Runtime, job: Any, origin: Origin, exc: BaseException, why: str) -> Next:
    """A job intake could not handle, kept as rejected with what went wrong (its type and a redacted first line)."""
    intake_error = {"kind": "intake_error", "type": type(exc).__name__, "message": redact_text(str(exc))}
    errors = {"_intake": [f"orderrelay could not take this job in ({why}); it is kept here and was not placed."]}
    try:
        return _reject(rt, job, JobInvalid(errors), origin, key=None, last_error=intake_error)
    except TRANSIENT_ERRORS:
        raise
    except Exception:  # even the job cannot be kept as it is: keep that there was one
        log.exception("could not keep the job either; keeping only that it came")
        return _reject(rt, {"_unreadable": True}, JobInvalid(errors), origin, key=None, last_error=intake_error)


def _take_in(rt: Runtime, job: Any, origin: Origin, *, claim: bool) -> Next:
    now = _now()
    try:
        valid: Job = validate_job(
            job,
            enabled=frozenset(rt.settings.providers),
            vault=rt.vault,
            now=now,
            **notify_options(rt.settings),
        )
    except JobInvalid as exc:
        return _reject(rt, job, exc, origin, key=_kept_key(job, exc))
    waits = valid.due_at > now
    status = Status.WAITING if waits else Status.QUEUED
    order_id = order_id_for(valid.idempotency_key, origin.message_id, origin.producer)
    reason = f"received; due {valid.due_at.isoformat()}" if waits else "received"
    due_at, admitted = valid.due_at, None
    if claim and not waits:  # placed at once, if its provider's limits let it call now
        admitted = _admit(rt, valid.provider, order_id)
        if not admitted.allowed:
            due_at = now + timedelta(seconds=admitted.defer)
            reason = f"received; {_deferred(admitted.defer, admitted.why)}"
            admitted = None
    in_horizon = (due_at - now).total_seconds() <= rt.settings.countdown_horizon
    since = time.monotonic()
    try:
        with rt.db.connection() as conn:
            row = store.insert_order(
                conn,
                order_id=order_id,
                provider=valid.provider,
                status=status,
                request=valid.order,
                request_hash=valid.fingerprint,
                idempotency_key=valid.idempotency_key,
                message_id=origin.message_id,
                producer=origin.producer,
                due_at=due_at,
                expected_at=due_at if in_horizon else None,
                reason=reason,
                received_at=now,
                notify=valid.notify,
                claim_lease=rt.settings.lease_seconds if admitted else None,
                mark=admitted is not None and _nothing_to_wait_for(rt, valid.provider, admitted),
            )
    except BaseException:
        if admitted:
            _give_back(rt, valid.provider, admitted)
        raise
    if not row["created"]:
        woken = _give_back(rt, valid.provider, admitted) if admitted else ()  # a job seen before: no call of its own
        conflict = row["request_hash"] != valid.fingerprint
        if conflict and origin.message_id is not None:  # a message: its record is the only answer it gets
            return replace(_conflict(rt, job, row, valid, origin), provider=valid.provider, wake=woken)
        log.info(
            "job seen before (its key or message repeated; another body: %s)",
            conflict,
            extra=order_fields(row["id"], valid.provider, status=row["status"]),
        )
        return Next(
            row["id"],
            row["status"],
            place_now=row["status"] == Status.QUEUED and not conflict,
            provider=valid.provider,
            conflict=conflict,
            wake=woken,
        )
    log.info("%s", reason, extra=order_fields(row["id"], valid.provider, status=status))
    if admitted:
        claim = {**row, "since": since, "admitted": admitted}
        return Next(row["id"], row["status"], provider=valid.provider, created=True, claim=claim)
    return replace(_schedule(rt, row["id"], status, due_at, valid.provider), created=True)


def _conflict(rt: Runtime, job: Any, existing: dict, valid: Job, origin: Origin) -> Next:
    """A job whose key or message id an order with another body already has: a rejected order says so."""
    if valid.idempotency_key is not None and existing["idempotency_key"] == valid.idempotency_key:
        errors = {"idempotency_key": [f"Already used by order {existing['id']} with another body."]}
    else:
        errors = {
            "_message_id": [
                f"Message id {origin.message_id} was already used by order {existing['id']} for another job."
            ]
        }
    marked = replace(origin, message_id=f"{origin.message_id}#conflict-{valid.fingerprint[:16]}")
    step = _reject(rt, job, JobInvalid(errors), marked, key=valid.idempotency_key)
    return replace(step, conflict=True)


def _kept_key(job: Any, exc: JobInvalid) -> str | None:
    """The key an invalid job is kept under (for looking it up), unless the key itself is what is wrong."""
    key = job.get("idempotency_key") if isinstance(job, dict) and "idempotency_key" not in exc.errors else None
    return key if isinstance(key, str) else None


def _reject(
    rt: Runtime, job: Any, exc: JobInvalid, origin: Origin, *, key: str | None, last_error: dict | None = None
) -> Next:
    raw = job if isinstance(job, dict) else {}
    provider = raw.get("provider") if isinstance(raw.get("provider"), str) else None
    provider = provider if provider in providers.REGISTRY else None
    kept = stored_job(job)
    # The errors name fields of a hostile job: their paths and messages are cleaned like the job itself.
    errors = {clean_text(path[:300]): [clean_text(m[:500]) for m in msgs] for path, msgs in exc.errors.items()}
    with rt.db.connection() as conn, conn.transaction():
        row = store.insert_order(  # a rejected job keeps its key but does not use it up: fix the job, send it again
            conn,
            order_id=order_id_for(None, origin.message_id),
            provider=provider,
            status=Status.REJECTED,
            request=kept,
            request_hash=fingerprint_of(provider, kept),
            idempotency_key=key,
            message_id=origin.message_id,
            producer=origin.producer,
            due_at=None,
            expected_at=None,
            notify=rejected_target(job, **notify_options(rt.settings)),
            reason="rejected: " + "; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in errors.items())[:2000],
            errors=errors,
            last_error=last_error,
        )
        notification = (
            notifications.add(conn, row["id"], deadline=rt.settings.notify_deadline) if row["created"] else None
        )
    log.info(
        "rejected: %d field error(s)", len(errors), extra=order_fields(row["id"], provider, status=Status.REJECTED)
    )
    return Next(row["id"], row["status"], created=row["created"], notification=notification)


def notify_options(settings: Settings) -> dict:
    """How this deployment treats jobs' outcome targets (for valid and rejected jobs alike)."""
    rules = NotifyRules(
        settings.notify_allow_http, settings.notify_allow_hosts, tuple(sorted(settings.notify_tasks.items()))
    )
    return {
        "notify_rules": rules,
        "default_notify": {"url": settings.notify_default} if settings.notify_default else None,
        "can_sign": bool(settings.notify_secret),
    }


def place(rt: Runtime, order_id: uuid.UUID | str, *, provider: str | None = None, reason: str = "claimed") -> Next:
    """Place a due order: if its provider's limits let it call now, claim it, make one provider attempt and record
    its outcome; if not, defer it without a claim or an attempt. A second delivery does nothing. ``provider`` is the
    order's (its message's queue says it), read from the row when not given."""
    order_id = uuid.UUID(str(order_id))
    if provider is None:
        with rt.db.connection() as conn:
            provider = store.provider_of(conn, order_id)
    if provider not in providers.REGISTRY:  # no such order (or none of a provider this deployment has)
        return Next(order_id, UNCLAIMED)
    admitted = _admit(rt, provider, order_id)
    if not admitted.allowed:
        return _postpone(rt, order_id, provider, admitted)
    since = time.monotonic()
    try:
        with rt.db.connection() as conn:
            claim = store.claim(
                conn,
                order_id,
                lease=rt.settings.lease_seconds,
                reason=reason,
                mark=_nothing_to_wait_for(rt, provider, admitted),
                lookup=providers.get(provider).LOOKUP,
            )
    except BaseException:
        _give_back(rt, provider, admitted)
        raise
    if claim is None:
        log.debug("order %s: not claimable now (not due, already taken or done)", order_id)
        return Next(order_id, UNCLAIMED, provider=provider, wake=_give_back(rt, provider, admitted))
    return attempt(rt, {**claim, "since": since, "admitted": admitted})


def _admit(rt: Runtime, provider_id: str, order_id: uuid.UUID) -> Pass:
    """Whether the order may call its provider now: the limits every worker shares (a pause, the ceiling, the rate),
    then this process's own (its circuit breaker and cap). When it may, its seat, turn and slot are taken."""
    shared = rt.limits.enter(provider_id, str(order_id))
    if not shared.allowed:
        return shared
    gate = rt.guard.enter(provider_id)
    if not gate.allowed:
        rt.limits.leave(provider_id, shared.seat)
        return Pass(False, gate.defer, gate.reason)
    return shared


def _give_back(rt: Runtime, provider_id: str, admitted: Pass) -> tuple[uuid.UUID, ...]:
    """An admitted call that will not be made (its order was not claimed): its slot and seat back; the orders the
    seat wakes."""
    rt.guard.cancel(provider_id)
    return _wake(rt, rt.limits.leave(provider_id, admitted.seat))


def _nothing_to_wait_for(rt: Runtime, provider_id: str, admitted: Pass) -> bool:
    """Whether the create request can follow the claim at once: the provider has no rate (a rate's turn is kept to
    within the time of the mark's own write, on a connection of its own, not the claim's on the shared pool) and no
    token is to be asked for. The claim's statement then marks the attempt as sending, and the usual order costs no
    write of its own for it; should the request have to wait for a connection, the worker takes the mark back first
    (``_Fence.connecting``)."""
    return admitted.turn is None and rt.http.ready(provider_id)


def _deferred(seconds: float, why: str) -> str:
    return f"deferred {seconds:.1f}s without a call: {why}"


def _postpone(rt: Runtime, order_id: uuid.UUID, provider_id: str, held: Pass) -> Next:
    """An order its limits hold back, before any claim: due again in ``held.defer`` seconds (a countdown within the
    horizon, else the sweep's), with an event; no attempt is made or counted."""
    seconds = max(SHORTEST_DEFER, held.defer)
    in_horizon = seconds <= rt.settings.countdown_horizon
    with rt.db.connection() as conn:
        status = store.postpone(
            conn, order_id, seconds=seconds, expected=in_horizon, reason=_deferred(seconds, held.why)
        )
    if status is None:  # not due (an early or repeated message), or taken meanwhile: nothing to do
        return Next(order_id, UNCLAIMED)
    due_at = _now() + timedelta(seconds=seconds)  # from after the statement (Postgres's due time): never early
    log.info("%s", _deferred(seconds, held.why), extra=order_fields(order_id, provider_id, status=status))
    return _schedule(rt, order_id, status, due_at, provider_id)


def _wake(rt: Runtime, woken: list[str]) -> tuple[uuid.UUID, ...]:
    """Orders that waited for a seat and may call now: due at once (each then gets a message). A failure here costs
    only time: each comes back by itself within FULL_RETRY seconds."""
    ids = []
    for order in woken:
        with contextlib.suppress(ValueError):
            ids.append(uuid.UUID(order))
    if not ids:
        return ()
    try:
        with rt.db.connection() as conn:
            return tuple(store.wake(conn, ids))
    except Exception:
        log.warning("could not wake %d order(s) waiting for a seat; they come back by themselves", len(ids))
        return ()


def attempt(rt: Runtime, claim: dict) -> Next:
    """Make one provider attempt under a claim (from ``place``, or from ``intake``) and record its outcome.

    ``claim["since"]`` is when the claim was taken (``time.monotonic()`` before its statement), ``claim["admitted"]``
    what the limits let it do (its seat and turn, taken before the claim).
    """
    provider = providers.get(claim["provider"])
    admitted: Pass = claim.get("admitted") or Pass(True)
    started = time.perf_counter()
    call, sending = None, None
    try:
        call, sending = _call(rt, provider, claim, admitted)
    finally:  # whatever happened: the slot and the seat go back (nothing here raises)
        woken = _after_call(rt, provider.ID, admitted, call, sending)
    latency_ms = (time.perf_counter() - started) * 1000
    if call.claim_lost:
        return replace(_late(rt, provider, claim, call, sending, latency_ms), provider=provider.ID, wake=woken)
    if isinstance(call.error, HeldBack) and not sending.sent:  # the limits held it back mid-way: no attempt at all
        deferred = _defer(rt, claim, provider.ID, call.error.retry_after or 1.0, call.error.message)
        return replace(deferred, provider=provider.ID, wake=woken)
    decision = policy.decide(
        rt.settings,
        provider,
        call,
        attempt=claim["attempt_count"] - claim["round_base"],
        uncertain_before=claim["uncertain"],
        key_sent_at=claim["key_sent_at"],
        now=_now(),
    )
    return replace(_record(rt, provider, claim, call, sending, decision, latency_ms), provider=provider.ID, wake=woken)


def _after_call(
    rt: Runtime, provider_id: str, admitted: Pass, call: Call | None, sending: provider_http.Sending | None
) -> tuple[uuid.UUID, ...]:
    """Free the call's slot and seat, share a pause the provider asked for, open a circuit: each step on its own, so
    that none of them, whatever it meets, keeps the others or the outcome from being done. The orders the seat
    wakes."""
    error = call.error if call is not None else None
    try:
        if call is None or (isinstance(error, HeldBack) and not (sending and sending.sent)):
            rt.guard.cancel(provider_id)  # no call was made: it says nothing of the provider's health
            changed = None
        else:
            healthy = call.claim_lost or call.placed is not None or isinstance(error, PermanentError)
            changed = rt.guard.leave(provider_id, healthy=healthy)
    except Exception:
        log.exception("provider=%s: could not give the call's slot back", provider_id)
        changed = None
    woken: tuple[uuid.UUID, ...] = ()
    try:
        woken = _wake(rt, rt.limits.leave(provider_id, admitted.seat))
    except Exception:
        log.exception("provider=%s: could not give the call's seat back (its lease frees it)", provider_id)
    try:
        if error is not None and error.status in (429, 503) and error.retry_after:
            rt.limits.pause(provider_id, error.retry_after)  # the provider turned us away: all of us, until then
        if changed is not None:
            _report_circuit(rt, provider_id, changed)
            if changed.state == "open":  # shared like a provider's pause: every worker holds its calls
                left = max(0.0, changed.open_until - time.monotonic())
                rt.limits.pause(provider_id, left, f"a worker's circuit opened after {changed.failures} failures")
    except Exception:
        log.exception("provider=%s: could not share a pause", provider_id)
    return woken


def _call(rt: Runtime, provider: Any, claim: dict, admitted: Pass) -> tuple[Call, provider_http.Sending]:
    """The attempt's requests, on the process's loop, with the claim kept alive and fenced before each send."""
    sending = provider_http.Sending(
        str(claim["provider_key"]), provider.KEY, uncertain=claim["uncertain"], marked=claim.get("marked", False)
    )
    order, unopened = open_fields(rt.vault, claim["request"], provider.CARD_FIELDS)
    if unopened:
        error = PermanentError("card data cannot be opened with the configured keys", details=sorted(unopened))
        return Call(error=error), sending
    held = rt.leases.hold(claim["id"], claim["claim_token"], claim["since"])

    async def ours(found: list[Placed]) -> list[Placed]:
        """The found orders no other order of ours has already recorded."""
        if not found:
            return found

        def owned() -> set[str]:
            with rt.db.connection() as conn:
                return store.ref_owners(conn, provider.ID, [p.ref for p in found], besides=claim["id"])

        taken = await asyncio.to_thread(owned)
        return [p for p in found if p.ref not in taken]

    try:
        call = rt.run(
            provider_http.attempt(
                provider,
                rt.http,
                rt.settings.providers[provider.ID],
                order,
                sending,
                fence=_Fence(rt, provider.ID, claim, sending, admitted.turn),
                ours=ours,
                deadline=rt.settings.longest_attempt,
            )
        )
    except Exception as exc:  # a bug of ours mid-call: once a create request went out, it may have made the order
        log.exception("order %s: unexpected error during attempt %d", claim["id"], claim["attempt_count"])
        kind = InDoubtError if sending.sent else RetryableError
        if sending.sent:
            sending.unanswered()
        call = Call(error=kind(f"internal error during the call: {type(exc).__name__}"))
    finally:
        rt.leases.release(held)
    return call, sending


@dataclass
class _Fence:
    """Around an attempt's requests (``providers.http.Fence``). Every request takes a turn of the provider's rate: the
    attempt's first one (a token grant, a lookup or the create) the turn the limits gave the order, each later one a
    fresh turn, or HeldBack when that is far (booked for the order, which is deferred to it, uncounted). Once a
    create request's connection is open, before a byte of it is written, the durable mark that it goes out now,
    fenced by the claim, on a connection of its own (``Marks``); or, where nothing stood between the claim and the
    request, the claim's own mark, taken back while a connection is made. So a worker killed or frozen while it
    waits for a token, a turn, a lookup or a connection leaves an attempt that recovery reads as "not sent", and a
    worker that lost its claim while it waited does not send."""

    rt: Runtime
    provider_id: str
    claim: dict
    sending: provider_http.Sending
    turn: float | None  # time.monotonic() of the turn the limits gave the order, until a request uses it
    used: bool = False  # the order's turn went to a request already

    async def pace(self) -> None:
        if not self.used:
            self.used = True
            await self.rt.limits.turn(self.provider_id, self.turn, str(self.claim["id"]))
        else:
            await self.rt.limits.pace(self.provider_id, str(self.claim["id"]))

    async def before(self) -> None:
        if self.sending.marked:  # by the claim's own statement: its turn had come, no token was to be asked for
            self.used = True
            if time.monotonic() - self.claim["since"] >= self.rt.settings.lease_seconds / 2:
                await self._mark()  # ... a while ago (a freeze): the claim is asked again before anything is sent
            return
        await self.pace()

    async def connecting(self) -> None:
        if self.sending.marked:  # the request must wait for a connection: until it has one, nothing is being sent
            await self.nothing_made()

    async def connected(self) -> None:
        if not self.sending.marked:
            await self._mark()

    async def _mark(self) -> None:
        claim = self.claim
        marked = await self._write(
            "mark it as sending",
            store.mark_sending,
            claim["id"],
            claim_token=claim["claim_token"],
            attempt_id=claim["attempt_id"],
        )
        if not marked:
            raise ClaimLost(f"order {claim['id']}: the claim was taken (or ran out) while this worker waited")
        self.sending.marked = True

    async def nothing_made(self) -> None:
        await self._write("take its sending mark back", store.unmark_sending, self.claim["attempt_id"])
        self.sending.marked = False

    async def _write(self, what: str, statement: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self.rt.marks.write(statement, *args, **kwargs)
        except TRANSIENT_ERRORS as exc:  # not written: nothing may be sent (the attempt ends as not sent)
            raise RetryableError(f"not sent: Postgres could not {what} ({type(exc).__name__})") from None


def _record(
    rt: Runtime,
    provider: Any,
    claim: dict,
    call: Call,
    sending: provider_http.Sending,
    decision: Decision,
    latency_ms: float,
) -> Next:
    """Write the attempt's outcome under the claim (fenced by its token); a lost claim makes it a late answer.

    The answer is logged first (the order, the provider's reference and status: no personal or card data), then
    written durably (``_durably``): while Postgres refuses, the write is tried again as long as this process lives,
    and one that lands after recovery took the claim resolves the order as a late answer."""
    settings = rt.settings
    order_id, placed, error = claim["id"], call.placed, call.error
    to_status, due_at = decision.status, decision.due_at
    outcome = Outcome.PLACED if placed else error.outcome
    in_horizon = due_at is not None and (due_at - _now()).total_seconds() <= settings.countdown_horizon
    # The CVC goes once nothing automatic sends the order again (a retryable failure with rounds left keeps it).
    done = _ends(settings, to_status, error, claim["retry_round"])
    notifies = claim["notifies"] and done
    fields = order_fields(order_id, provider.ID, claim["attempt_count"], outcome, to_status)
    log.info("%s (%.0f ms)", decision.reason, latency_ms, extra=fields)
    values = {
        "order_id": order_id,
        "claim_token": claim["claim_token"],
        "attempt_id": claim["attempt_id"],
        "outcome": outcome,
        "to_status": to_status,
        "reason": decision.reason,
        "http_status": placed.http_status if placed else error.status,
        "latency_ms": latency_ms,
        "error": decision.error or (None if placed else error.as_record()),
        "provider_ref": placed.ref if placed else None,
        "provider_status": placed.status if placed else None,
        "response": provider_http.scrub(placed.response) if placed else None,
        "due_at": due_at,
        "expected_at": due_at if in_horizon else None,
        "request": erase_fields(claim["request"], provider.ERASE_WHEN_DONE) if done else None,
        "attempt_key": sending.sent_key,
        "next_key": sending.key if sending.key != str(claim["provider_key"]) else None,
        "key_sent": sending.sent,
    }

    def write(values: dict) -> tuple[bool, int | None]:
        # One statement is atomic on its own; the notification must be recorded with the outcome or not at all.
        with rt.db.connection() as conn, conn.transaction() if notifies else contextlib.nullcontext():
            kept = store.finish_attempt(conn, **values)
            return kept, notifications.add(
                conn, order_id, deadline=settings.notify_deadline
            ) if kept and notifies else None

    kept, notification = _durably(rt, order_id, write, values)
    if not kept:
        return _late(rt, provider, claim, call, sending, latency_ms)
    return replace(_schedule(rt, order_id, to_status, due_at, provider.ID), notification=notification)


def _durably(rt: Runtime, order_id: uuid.UUID, write: Any, values: dict) -> Any:
    """``write(values)`` until Postgres takes it: what a provider answered outlives an outage (a restart, a failover,
    dropped connections) for as long as this process lives. A value Postgres will never take (a NUL or a lone
    surrogate in a provider's text, NaN in its JSON) is written once more with every value made storable, and then,
    if need be, with only what the outcome must keep (``_bare``)."""
    delay, tries, cleaned = 0.2, 0, 0
    while True:
        try:
            return write(values)
        except TRANSIENT_ERRORS as exc:
            tries += 1
            if tries in (1, 10) or tries % 100 == 0:
                log.warning(
                    "order %s: Postgres did not take the outcome (%s, try %d); trying again until it does",
                    order_id,
                    type(exc).__name__,
                    tries,
                )
            time.sleep(delay)
            delay = min(5.0, delay * 2)
        except VALUE_ERRORS as exc:
            if cleaned == 2:
                raise
            log.error("order %s: Postgres refused a value of the outcome (%s); keeping it cleaned", order_id, exc)
            values, cleaned = (_storable(values), 1) if not cleaned else (_bare(values), 2)


def _storable(values: dict) -> dict:
    """The outcome's values with every text and JSON value cleaned and bounded as a rejected job's are."""
    kept = {}
    for name, value in values.items():
        if isinstance(value, str):
            kept[name] = clean_text(value[:MAX_STRING])
        elif name == "response" and value is not None:
            kept[name] = stored_job(value)
        elif name == "error":
            kept[name] = storable(value)
        else:
            kept[name] = value
    return kept


def _bare(values: dict) -> dict:
    """The last resort: what the outcome must keep (the reference, the status), every text as plain ASCII, and neither
    the answer nor an error's details."""
    kept = {
        name: value.encode("ascii", "replace").decode() if isinstance(value, str) else value
        for name, value in values.items()
    }
    kept["response"] = None if values.get("response") is None else {"_unstorable": True}
    if isinstance(values.get("error"), dict):
        kept["error"] = {"kind": values["error"].get("kind"), "message": "(the provider's text could not be kept)"}
    return kept


def _late(
    rt: Runtime, provider: Any, claim: dict, call: Call, sending: provider_http.Sending, latency_ms: float
) -> Next:
    """What a worker learnt after its claim was taken: an event on the order, the attempt's real outcome, and an
    order that is placed after all when the answer proves it (whatever the sweep decided meanwhile)."""
    order_id, placed, error = claim["id"], call.placed, call.error
    never_sent = call.claim_lost and not sending.sent
    if call.claim_lost:
        error = RetryableError("not sent: this worker's claim had been taken before it could send")
    why = f"{provider.ID} reference {placed.ref}" if placed else f"{error.outcome}: {error.message}"
    reason = f"late answer after the claim was lost (attempt {claim['attempt_count']}): {why}"
    values = {
        "order_id": order_id,
        "attempt_id": claim["attempt_id"],
        "outcome": Outcome.PLACED if placed else error.outcome,
        "reason": reason,
        "http_status": placed.http_status if placed else error.status,
        "latency_ms": latency_ms,
        "error": None if placed else error.as_record(),
        "attempt_key": sending.sent_key,
        "provider_ref": placed.ref if placed else None,
        "provider_status": placed.status if placed else None,
        "response": provider_http.scrub(placed.response) if placed else None,
        "request": erase_fields(claim["request"], provider.ERASE_WHEN_DONE) if placed else None,
        "never_sent": never_sent,
    }

    def write(values: dict) -> tuple[dict, int | None]:
        with rt.db.connection() as conn, conn.transaction():
            row = store.late_answer(conn, **values)
            added = row["placed_from"] and row["notifies"]
            return row, notifications.add(conn, order_id, deadline=rt.settings.notify_deadline) if added else None

    row, notification = _durably(rt, order_id, write, values)
    fields = order_fields(order_id, provider.ID, claim["attempt_count"])
    if placed and row["status_before"] == Status.PLACED and row["ref_before"] != placed.ref:
        log.error("%s; the order was already placed as %s: two orders at the provider", reason, row["ref_before"])
    else:
        log.warning("%s (the order was %s)", reason, row["status_before"], extra=fields)
    if row["placed_from"]:
        return Next(order_id, Status.PLACED, notification=notification)
    if row["requeued"]:
        return Next(order_id, Status.QUEUED, place_now=True, provider=provider.ID)
    return Next(order_id, UNCLAIMED)


def _ends(settings: Settings, status: str, error: ProviderError | None, retry_round: int) -> bool:
    """Whether the checkout system hears of this status now: every end state, but a retryable failure only
    once the scheduled rounds are spent."""
    if status in (Status.PLACED, Status.IN_DOUBT):
        return True
    if status != Status.FAILED:
        return False
    return not isinstance(error, RetryableError) or retry_round >= settings.retry_rounds


def _defer(rt: Runtime, claim: dict, provider_id: str, seconds: float, why: str) -> Next:
    """Give the claim back unused (the limits held the call back after the claim: nothing was sent) and make the
    order due again in ``seconds``: a countdown within the horizon, else the sweep's (a countdown longer than the
    broker's visibility timeout would be delivered again and again)."""
    to_status = Status.RETRYING if claim["from_status"] == Status.RETRYING else Status.QUEUED
    seconds = max(SHORTEST_DEFER, seconds)
    in_horizon = seconds <= rt.settings.countdown_horizon
    with rt.db.connection() as conn:
        given_back = store.defer(
            conn,
            claim["id"],
            claim_token=claim["claim_token"],
            attempt_id=claim["attempt_id"],
            to_status=to_status,
            seconds=seconds,
            expected=in_horizon,
            reason=_deferred(seconds, why),
        )
    if not given_back:  # the claim was taken meanwhile (recovered): the order is another's now
        return Next(claim["id"], UNCLAIMED)
    due_at = _now() + timedelta(seconds=seconds)  # from after the statement (Postgres's due time): never early
    log.info("%s", _deferred(seconds, why), extra=order_fields(claim["id"], provider_id, status=to_status))
    return _schedule(rt, claim["id"], to_status, due_at, provider_id)


def _report_circuit(rt: Runtime, provider_id: str, circuit: Any) -> None:
    open_until = (
        _now() + timedelta(seconds=max(0.0, circuit.open_until - time.monotonic())) if circuit.state == "open" else None
    )
    log.warning("provider=%s circuit %s after %d failures in a row", provider_id, circuit.state, circuit.failures)
    try:
        with rt.db.connection() as conn:
            store.record_circuit(conn, provider_id, rt.name, circuit, open_until)
    except Exception:  # visibility only: never let it break placing orders
        log.exception("provider=%s: could not record the circuit's state", provider_id)


def follow_up(rt: Runtime, *, limit: int = 200, budget: float = 60.0) -> int:
    """Read placed orders whose provider status may still change; record changes. Returns how many changed.

    The reads take turns under the provider's shared limits, and a pause stops the run (the orders it did not read
    are read by the next one). Each order is its own problem: an answer that cannot be read, a failed call or a
    status the provider does not document is kept on that order (its last error, an event when new) and the run goes
    on. A run takes its orders (overlapping runs read different ones), stops taking more after ``budget`` seconds,
    and an order still pending ``follow_up_deadline`` seconds after it was placed is reported to operators, once.
    """
    changed, started, seen = 0, time.monotonic(), set()
    while time.monotonic() - started < budget:
        with rt.db.connection() as conn:
            rows = [r for r in store.take_follow_ups(conn, limit=min(limit, 20)) if r["id"] not in seen]
        if not rows:  # none left, or every one taken has been read in this run already: once a run is enough
            break
        seen.update(r["id"] for r in rows)
        try:
            for row in rows:
                changed += _follow_up_one(rt, row)
        except HeldBack as held:  # the provider is paused, or its turns are taken: the rest wait for the next run
            log.info("follow-up stopped for now: %s", held.message)
            break
        limit -= len(rows)
        if limit <= 0:
            break
    return changed


def _follow_up_one(rt: Runtime, row: dict) -> int:
    provider = providers.get(row["provider"])
    fields = order_fields(row["id"], provider.ID)
    try:
        order, _ = open_fields(rt.vault, row["request"], provider.CARD_FIELDS)
        now = rt.run(
            provider_http.follow_up(provider, rt.http, rt.settings.providers[provider.ID], order, row["provider_ref"])
        )
    except HeldBack:
        raise
    except ProviderError as exc:
        trouble = {"kind": "follow_up", "message": f"the follow-up read failed: {exc.message}", "code": exc.code}
        return _follow_up_trouble(rt, row, trouble)
    except Exception as exc:  # an answer we cannot read (a maintenance page): this order's problem only
        log.warning("follow-up answer unreadable: %s", type(exc).__name__, extra=fields)
        trouble = {"kind": "follow_up", "message": f"the follow-up answer could not be read ({type(exc).__name__})"}
        return _follow_up_trouble(rt, row, trouble)
    if now is None:
        return 0
    if now.status == row["provider_status"]:
        return _follow_up_trouble(rt, row, None)
    failed = now.status in provider.FAILED_STATUSES
    reason = f"{provider.ID} status {row['provider_status']} -> {now.status}"
    if not failed and now.status not in provider.KNOWN_STATUSES:
        reason += f" (a status {provider.ID} does not document; still followed)"
    error = (
        {"kind": "permanent", "message": f"{provider.ID} failed the order after creating it", "code": now.status}
        if failed
        else None
    )
    to_status = Status.FAILED if failed else Status.PLACED
    with rt.db.connection() as conn, conn.transaction():
        recorded = store.record_provider_status(
            conn,
            row["id"],
            from_status=row["provider_status"],
            provider_status=now.status,
            response=provider_http.scrub(now.response),
            to_status=to_status,
            reason=f"failed after creation: {reason}" if failed else reason,
            error=error,
        )
        if recorded:
            notifications.add(conn, row["id"], deadline=rt.settings.notify_deadline)  # a later change, once
    if recorded:
        log.info("provider status now %s", now.status, extra=order_fields(row["id"], provider.ID, status=to_status))
    return int(recorded)


def _follow_up_trouble(rt: Runtime, row: dict, trouble: dict | None) -> int:
    """Keep what the follow-up could not learn on the order; past the deadline, that it is overdue (told once)."""
    placed_at = row["placed_at"]
    if placed_at is not None and (_now() - placed_at).total_seconds() > rt.settings.follow_up_deadline:
        trouble = {
            "kind": "follow_up_overdue",
            "message": f"still {row['provider_status']} at {row['provider']} after the follow-up deadline: "
            "an operator should check it",
        }
        if (row["last_error"] or {}).get("kind") != "follow_up_overdue":
            log.error("%s", trouble["message"], extra=order_fields(row["id"], row["provider"]))
    reason = trouble["message"] if trouble else "follow-up read again"
    with rt.db.connection() as conn:
        store.follow_up_trouble(conn, row["id"], error=trouble, reason=reason)
    return 0


SWEEP_BATCH = 1000


def sweep(rt: Runtime) -> list[tuple[uuid.UUID, str]]:
    """Recover lost work: claims whose worker died, and due orders whose message never came.

    Returns (order id, provider) for each order to send a message for.
    """
    with rt.db.connection() as conn:
        for row in store.expired_leases(conn):
            with conn.transaction():
                _recover(conn, row, providers.get(row["provider"]), rt.settings)
        store.fold_totals(conn)  # so that the deltas a reader adds up stay few, however rarely anyone reads
        due, started = [], time.monotonic()
        # Batch after batch while whole batches come (100,000 orders due at midnight go out in one run, not in
        # 1,000 a run), for at most half the interval, so that runs do not pile up.
        while True:
            batch = store.sweep_due(conn, grace=rt.settings.requeue_grace, limit=SWEEP_BATCH)
            due += batch
            if len(batch) < SWEEP_BATCH or time.monotonic() - started > rt.settings.sweep_interval / 2:
                return due


def jobs_lost(rt: Runtime) -> list[tuple[str, dict]]:
    """Jobs the producer noted that are neither rows nor anywhere in Redis (see orderrelay.core.pending): (message id,
    job) of each, to send again under the same message id."""

    def recorded(ids: list[str]) -> list[str]:
        with rt.db.connection() as conn:
            return store.recorded_messages(conn, ids)

    return pending.lost(rt.notes, recorded, grace=rt.settings.requeue_grace)


def _recover(conn: Any, row: dict, provider: Any, settings: Settings) -> None:
    """An expired lease (its worker was lost or froze). An attempt that was never marked as sending made nothing: the
    order is placed again. One that was may have made the order: placed again where the provider's lookup or key
    makes that safe, else in doubt."""
    decision = policy.recover(provider, row["key_sent_at"], _now())
    moved = store.recover_lease(
        conn, row["id"], to_status=decision.status, due_at=decision.due_at, reason=decision.reason
    )
    if moved == Status.IN_DOUBT:
        store.erase_request_paths(conn, row["id"], provider.ERASE_WHEN_DONE)
        notifications.add(conn, row["id"], deadline=settings.notify_deadline)
