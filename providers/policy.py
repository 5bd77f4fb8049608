"""The outcome policy, written once for every provider: what each answer class leads to.

A provider call ends in one of these answer classes (``providers/http.py`` sorts them):

- **placed**: a 2xx with the order (or a lookup that proves the provider holds this very order);
- **refused**: a 4xx other than 429 (after one fresh token for a 401) - this request made nothing;
- **not sent**: the connection was refused or timed out before the request went out - nothing made;
- **429** and **503**: the provider turned the request away before processing it - nothing made;
- **500, 502, 504** (any 5xx but 503): may come from a gateway or a crash *after* the provider made the order;
- **no answer**: the connection dropped, or the read timed out, after the request went out;
- **slower than the lease**: the claim is renewed while the call is in flight, so the answer is still awaited;
  a worker that lost its claim anyway (frozen, cut off) does not send, and an answer that comes after its
  claim was taken is recorded as an event (and resolves the order when it proves placement).

The last three leave the order *uncertain*: some request may have made it. What may follow depends on what the
provider offers (its module's ``KEY``, ``KEY_TTL`` and ``LOOKUP``):

- a **lookup** that proves identity (Extend by its line items and amounts, Webroot by the cart): every resend
  after an uncertain outcome anywhere in the order's history is preceded by a lookup; a refusal of such a resend
  is looked up once more; an order that never gets placed ends ``in_doubt``, not ``failed``;
- a **stable key** the provider honours (Extend's ``X-Idempotency-Key``): resent with the same key while the
  provider still remembers it (``KEY_TTL``);
- a **per-answer key** (Adobe's ``X-Correlation-Id``): kept across requests that got no answer, renewed after
  any answer (Adobe replays any answer it gave for an id); while the order is uncertain only the same id can
  tell, so it is kept until the provider answers it with the order or a refusal;
- **neither** (Chaiz, battleface): an uncertain order is ``in_doubt`` at once, never resent; an operator checks
  with the provider and resolves it (or retries it, acknowledging that the provider holds nothing).

``failed`` always means the provider certainly holds nothing for the order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orderrelay.foundation.constants import Status
from orderrelay.foundation.errors import AuthError, InDoubtError, PermanentError, ProviderError
from orderrelay.foundation.options import Settings
from orderrelay.providers.base import Key, Placed


@dataclass
class Call:
    """What one attempt's requests came to."""

    placed: Placed | None = None
    error: ProviderError | None = None
    found: bool = False  # ``placed`` came from a lookup, not from a create request
    refusal_confirmed: bool = False  # refused, and a lookup after the refusal found no order of ours
    claim_lost: bool = False  # the worker's claim was taken before it sent: nothing was sent


@dataclass(frozen=True)
class Decision:
    """The order's next status, the event's reason, and when it is due again."""

    status: str
    reason: str
    due_at: datetime | None = None
    error: dict | None = None  # what the order records as its error when the call itself raised none


def key_fresh(provider: Any, key_sent_at: datetime | None, now: datetime) -> bool:
    """Whether the provider still remembers what it answered for the current key."""
    if provider.KEY == Key.NONE:
        return False
    return key_sent_at is None or provider.KEY_TTL is None or (now - key_sent_at).total_seconds() < provider.KEY_TTL


def resend_safe(provider: Any, key_sent_at: datetime | None, now: datetime) -> bool:
    """Whether an uncertain order may be sent again: a lookup will look first, or the key will be replayed."""
    return provider.LOOKUP or key_fresh(provider, key_sent_at, now)


def backoff(settings: Settings, attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never shorter than the provider's Retry-After."""
    ceiling = min(settings.backoff_max, settings.backoff_base * 2 ** max(0, attempt - 1))
    return max(random.uniform(0, ceiling), retry_after or 0.0)


def decide(
    settings: Settings,
    provider: Any,
    call: Call,
    *,
    attempt: int,
    uncertain_before: bool,
    key_sent_at: datetime | None,
    now: datetime,
) -> Decision:
    """The next status after an attempt (``attempt``: its number in this round), by the policy above."""
    placed, error = call.placed, call.error
    if placed is not None:
        how = "found by lookup" if call.found else "placed"
        if placed.status in provider.FAILED_STATUSES:
            message = f"{provider.ID} made the order in status {placed.status}, which is a failure"
            error = {"kind": "permanent", "message": message, "code": placed.status}
            return Decision(Status.FAILED, f"failed: {message} ({placed.ref})", error=error)
        return Decision(Status.PLACED, f"{how}: {provider.ID} reference {placed.ref} ({placed.status})")
    assert error is not None
    detail = f"{error.outcome}: {error.message}" + (f" (HTTP {error.status})" if error.status else "")
    if isinstance(error, PermanentError):
        if not uncertain_before or call.refusal_confirmed:
            return Decision(Status.FAILED, f"failed: {detail}")
        if not isinstance(error, AuthError) and key_fresh(provider, key_sent_at, now):
            # the key an earlier request carried: the provider would have replayed an order it made then
            return Decision(Status.FAILED, f"failed: {detail}; refused under the key an earlier request used")
        return Decision(Status.IN_DOUBT, f"in doubt: {detail}, but an earlier request may have placed it")
    uncertain = uncertain_before or isinstance(error, InDoubtError)
    if uncertain and not resend_safe(provider, key_sent_at, now):
        return Decision(Status.IN_DOUBT, f"in doubt: {detail}; an operator must check with {provider.ID}")
    if attempt >= settings.max_attempts:
        if uncertain:
            return Decision(Status.IN_DOUBT, f"in doubt after {attempt} attempts: {detail}")
        return Decision(Status.FAILED, f"failed after {attempt} attempts: {detail}")
    delay = backoff(settings, attempt, error.retry_after)
    return Decision(Status.RETRYING, f"retry in {delay:.1f}s: {detail}", now + timedelta(seconds=delay))


def recover(provider: Any, key_sent_at: datetime | None, now: datetime) -> Decision:
    """A claim whose lease ran out (its worker died or froze mid-call): the call may have made the order."""
    if resend_safe(provider, key_sent_at, now):
        how = "looked up first" if provider.LOOKUP else "resent with the same key"
        return Decision(Status.QUEUED, f"lease expired (worker lost) mid-call; placing again, {how}", now)
    return Decision(Status.IN_DOUBT, f"lease expired (worker lost) mid-call; an operator must check with {provider.ID}")
