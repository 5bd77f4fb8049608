"""Providers' limits, shared by every worker process on every host: a request rate, a ceiling on calls in flight,
and a pause a provider asked for (429 / Retry-After), each kept in the broker's Redis by one atomic script.

The rate is a paced token bucket (GCRA, on Redis's clock): ``20/second`` spaces calls 50 ms apart, with a burst
of 1 unless the deployment names one (``20/second:5``). A moving window, as the ``limits`` library keeps, would let
all 20 go in the same millisecond, which a provider that enforces a token bucket answers with 429s (the first
version of the test above showed it). A call whose turn is less than a second away waits for it in its thread; a
later one is deferred.

An order held back by any of them is deferred without a call and is not counted as an attempt (the pipeline's
``_defer``). If Redis cannot answer, each worker falls back to its own per-process caps (the in-flight cap and the
circuit breaker of ``foundation.breaker``) and says so in its log and in ``status``; no order is lost or doubled
because of a limiter: a limiter only ever delays a call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

import redis

from orderrelay.foundation.options import parse_rate

log = logging.getLogger("orderrelay.limits")

PREFIX = "orderrelay:limits"
# A call holds a seat of its provider's ceiling until it ends, or until LEASE seconds have passed (a worker that
# died mid-call frees its seat by then).
LEASE = 300.0
SEAT = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) < tonumber(ARGV[3]) then
    redis.call('zadd', KEYS[1], ARGV[2], ARGV[4])
    redis.call('pexpire', KEYS[1], ARGV[5])
    return 1
end
return 0
"""
# The rate: the key holds the theoretical arrival time (TAT, ms on Redis's clock). ARGV: the spacing in ms, the
# burst, 1 to take the turn (else only look). Returns the ms until the next turn (until this caller's, if taken).
TURN = """
local now_parts = redis.call('time')
local now = now_parts[1] * 1000 + now_parts[2] / 1000
local spacing, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('get', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - spacing * (burst - 1) - now
if wait < 0 then wait = 0 end
if ARGV[3] == '1' then
    redis.call('set', KEYS[1], tostring(tat + spacing), 'PX', math.ceil(tat + spacing - now) + 1000)
end
return tostring(wait)
"""
# An order whose provider's next turn is further away than this is deferred without a call; a nearer one is
# claimed, and its create request waits for its turn, taken right before it goes out (after the token grant, so
# calls that waited for a token do not go out together).
LONGEST_WAIT = 1.0
# A pause is kept at the latest time any provider answer named.
PAUSE = """
local left = redis.call('pttl', KEYS[1])
if left < tonumber(ARGV[1]) then redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[1]) end
return 1
"""


def redis_key(kind: str, provider: str) -> str:
    """The Redis key of one of a provider's limits: its ``rate`` (TAT), its ``seats``, its ``pause``."""
    return f"{PREFIX}:{kind}:{provider}"


@dataclass(frozen=True)
class Pass:
    """Whether a call may go now; if not, in how many seconds to try again and why; ``seat`` to give back."""

    allowed: bool
    defer: float = 0.0
    why: str = ""
    seat: str | None = None


class SharedLimits:
    """One per worker process, over the broker's Redis (none for another broker: per-process caps only)."""

    def __init__(self, broker_url: str, rates: dict[str, str], ceilings: dict[str, int]):
        self.rates = {provider: parse_rate(rate) for provider, rate in rates.items()}
        self.named = dict(rates)
        self.ceilings = dict(ceilings)
        self.degraded: str | None = None  # why the shared limits are not in force right now
        self.redis = None
        if broker_url.startswith(("redis://", "rediss://")):  # a pause a provider asks for holds even unlimited ones
            self.redis = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
        elif rates or ceilings:
            self.degraded = "the broker is not Redis: per-process caps only"

    def enter(self, provider: str) -> Pass:
        """Take a seat and a request of ``provider``'s limits, or say how long to wait."""
        if self.redis is None:
            return Pass(True)
        try:
            pause = redis_key("pause", provider)
            why, paused = self.redis.pipeline().get(pause).pttl(pause).execute()
            if paused > 0:
                return Pass(False, paused / 1000, f"{provider} is paused for every worker: {(why or b'').decode()}")
            seat = None
            if provider in self.ceilings:
                seat = uuid.uuid4().hex
                now = time.time()
                key = redis_key("seats", provider)
                taken = self.redis.eval(
                    SEAT, 1, key, now, now + LEASE, self.ceilings[provider], seat, int(LEASE * 1000)
                )
                if not taken:
                    return Pass(False, 0.5, f"{provider}'s ceiling of {self.ceilings[provider]} calls in flight")
            if provider in self.rates:
                wait = self._turn(provider, take=False)
                if wait > LONGEST_WAIT:
                    self.leave(provider, seat)
                    return Pass(False, wait, f"{provider}'s rate of {self.named[provider]}")
        except redis.RedisError as exc:
            self._away(exc)
            return Pass(True)
        if self.degraded:
            log.warning("shared provider limits in force again")
            self.degraded = None
        return Pass(True, seat=seat)

    def _turn(self, provider: str, *, take: bool) -> float:
        spacing, burst = self.rates[provider]
        key = redis_key("rate", provider)
        return float(self.redis.eval(TURN, 1, key, spacing * 1000, burst, "1" if take else "0")) / 1000

    async def turn(self, provider: str) -> None:
        """Wait for ``provider``'s next turn and take it: right before a create request goes out."""
        if self.redis is None or provider not in self.rates:
            return
        asked = time.monotonic()
        try:
            wait = await asyncio.to_thread(self._turn, provider, take=True)
        except redis.RedisError as exc:
            self._away(exc)
            return
        # the turn is at (when Redis answered + wait): count from when it was asked, not from when the answer got
        # back to this coroutine, so a busy thread pool or loop does not push calls together
        await asyncio.sleep(max(0.0, asked + wait - time.monotonic()))

    def leave(self, provider: str, seat: str | None) -> None:
        """Give the call's seat back."""
        if seat is None or self.redis is None:
            return
        try:
            self.redis.zrem(redis_key("seats", provider), seat)
        except redis.RedisError as exc:
            self._away(exc)

    def pause(self, provider: str, seconds: float, why: str = "it asked for a pause (Retry-After)") -> None:
        """No worker calls ``provider`` for ``seconds``: it asked (429 or 503 with Retry-After), or a worker's
        circuit opened."""
        if self.redis is None or seconds <= 0:
            return
        try:
            self.redis.eval(PAUSE, 1, redis_key("pause", provider), int(seconds * 1000), why)
            log.warning("%s paused for %.1fs, for every worker: %s", provider, seconds, why)
        except redis.RedisError as exc:
            self._away(exc)

    def _away(self, exc: Exception) -> None:
        self._degrade(f"Redis cannot answer for the limits ({type(exc).__name__}): per-process caps only")

    def _degrade(self, why: str) -> None:
        if self.degraded != why:
            log.warning(why)
        self.degraded = why


def view(broker_url: str, rates: dict[str, str], ceilings: dict[str, int]) -> dict[str, dict]:
    """Each limited provider's limit, its requests in the current window, its calls in flight and any pause (for
    ``status`` and the metrics); {"error": ...} where Redis cannot answer."""
    if not (rates or ceilings):
        return {}
    if not broker_url.startswith(("redis://", "rediss://")):
        return {"_": {"error": "the broker is not Redis: per-process caps only"}}
    client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
    shown = {}
    try:
        for provider in sorted(set(rates) | set(ceilings)):
            entry: dict = {}
            if provider in rates:
                entry["rate"] = rates[provider]
                # how far ahead the next turn is booked: 0 when the provider is idle, ~burst x spacing when busy
                now_s, now_us = client.time()
                tat = float(client.get(redis_key("rate", provider)) or 0)
                entry["booked_ahead_s"] = round(max(0.0, tat - (now_s * 1000 + now_us / 1000)) / 1000, 3)
            if provider in ceilings:
                client.zremrangebyscore(redis_key("seats", provider), "-inf", time.time())
                entry["ceiling"] = ceilings[provider]
                entry["in_flight"] = client.zcard(redis_key("seats", provider))
            paused = client.pttl(redis_key("pause", provider))
            entry["paused_for"] = round(paused / 1000, 1) if paused > 0 else 0
            shown[provider] = entry
    except redis.RedisError as exc:
        return {"_": {"error": f"Redis cannot answer for the limits: {type(exc).__name__}"}}
    return shown
