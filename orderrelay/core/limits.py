"""Providers' limits, shared by every worker process on every host: a request rate, a ceiling on calls in flight,
and a pause a provider asked for (429 / Retry-After) or a worker's open circuit, kept in the broker's Redis.

What they promise, and how:

- **One look is one take.** Whether an order may call now is decided by one script on Redis's clock that looks at
  the pause, the ceiling and the rate and, when the call may go, takes its seat and its turn in the same step: a
  herd of callers (a sweep's batch, a cold start) cannot all pass a look and then crowd the turns.
- **The rate** is a paced token bucket (GCRA): ``20/second`` spaces calls 50 ms apart, with a burst of 1 unless the
  deployment names one (``20/second:5``). A turn less than LONGEST_WAIT away is waited for right before the create
  request goes out; a farther one is *booked* for the order, which is deferred until just before it (so a backlog
  drains at the rate with each order deferred once or twice, not spinning). A create request that comes later than
  its turn (a token grant or a lookup took the time) takes a fresh one rather than crowd the next. Token grants,
  lookups and follow-up reads take turns too (``pace``).
- **The ceiling** is a sorted set of seats, each leased on Redis's clock and renewed with the claims while its call
  lasts (however long that is), freed when the call ends, and within one lease when its worker died. An order that
  finds it full waits (deferred without a call) until a call of that provider ends, which wakes the first waiters,
  or at most FULL_RETRY seconds.
- **A pause** holds every worker's calls of that provider until the time the provider named (bounded by
  ``providers.base.LONGEST_RETRY_AFTER``; ``orderrelay limits resume`` lifts one); the orders it holds come back
  spread over PAUSE_SPREAD seconds after it ends, so the end of a pause is not a herd.

An order held back is deferred without a call and is not counted as an attempt (``orderrelay.core.pipeline``). If
Redis cannot answer, each worker falls back to its own per-process caps (``foundation.breaker``) and says so in its
log and in ``status``: a limiter only ever delays a call, so no order is lost or doubled because of one. Nothing
here raises past the code that records a call's outcome: ``leave`` and ``pause`` log what they cannot do.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass

import redis

from orderrelay.foundation.errors import HeldBack
from orderrelay.foundation.options import parse_rate
from orderrelay.providers.base import bounded_wait

log = logging.getLogger("orderrelay.limits")

PREFIX = "orderrelay:limits"
LONGEST_WAIT = 1.0  # seconds: a turn this near is waited for, right before the request; a farther one is booked
LATE = 0.010  # seconds: a create request later than this for its turn takes a fresh turn
LEAD = 0.25  # seconds before its booked turn a deferred order is due again, to be in hand when the turn comes
BOOK_AHEAD = 3600.0  # seconds: turns are booked at most this far ahead; an order behind them waits unbooked
FULL_RETRY = 30.0  # seconds at most a waiter for a full ceiling waits when no call of its provider ends meanwhile
PAUSE_SPREAD = 10.0  # seconds over which the orders a pause held come back after it
SHORTEST_DEFER = 0.1  # seconds: no deferral is shorter (a deferral of 0 would be a loop)

# The one decision: KEYS pause, seats, rate, booked, waiters. ARGV: [1] the order (its booked turn; '' for none),
# [2] a seat id, [3] the ceiling (0: none), [4] the seat's lease (ms), [5] the rate's spacing (ms; 0: none),
# [6] the burst, [7] LONGEST_WAIT (ms), [8] how far ahead a turn may be booked (ms; 0: never), [9] LATE (ms).
# Returns {kind, ms, detail}:
#   paused  ms left, the pause's reason          full    ms until the first seat's lease ends (the order now waits)
#   booked  ms until the order's booked turn     far     ms until the next turn (nothing taken: beyond booking)
#   ok      ms until the turn now taken, '1' if a seat was taken
ENTER = """
local t = redis.call('time')
local now = t[1] * 1000 + t[2] / 1000
local left = redis.call('pttl', KEYS[1])
if left > 0 then
    return {'paused', tostring(left), redis.call('get', KEYS[1]) or ''}
end
local ceiling = tonumber(ARGV[3])
if ceiling > 0 then
    redis.call('zremrangebyscore', KEYS[2], '-inf', now)
    if redis.call('zcard', KEYS[2]) >= ceiling then
        local first = redis.call('zrange', KEYS[2], 0, 0, 'WITHSCORES')
        if ARGV[1] ~= '' then
            redis.call('zadd', KEYS[5], 'NX', now, ARGV[1])
            redis.call('pexpire', KEYS[5], tonumber(ARGV[4]) + 60000)
        end
        return {'full', tostring(tonumber(first[2]) - now), ''}
    end
end
local wait = 0
local spacing = tonumber(ARGV[5])
if spacing > 0 then
    local longest = tonumber(ARGV[7])
    local booked = -1
    if ARGV[1] ~= '' then booked = tonumber(redis.call('hget', KEYS[4], ARGV[1]) or '-1') end
    if booked >= 0 and booked - now > longest then
        return {'booked', tostring(booked - now), ''}
    end
    if booked >= 0 then redis.call('hdel', KEYS[4], ARGV[1]) end
    if booked >= now - tonumber(ARGV[9]) then
        wait = math.max(0, booked - now)
    else
        local tat = math.max(tonumber(redis.call('get', KEYS[3]) or '0'), now)
        local at = math.max(tat - spacing * (tonumber(ARGV[6]) - 1), now)
        wait = at - now
        if wait > longest and wait > tonumber(ARGV[8]) then
            return {'far', tostring(wait), ''}
        end
        local ttl = math.ceil(tat + spacing - now) + 60000
        redis.call('set', KEYS[3], string.format('%.3f', tat + spacing), 'PX', ttl)
        if wait > longest then
            redis.call('hset', KEYS[4], ARGV[1], string.format('%.3f', at))
            if redis.call('pttl', KEYS[4]) < ttl then redis.call('pexpire', KEYS[4], ttl) end
            return {'booked', tostring(wait), ''}
        end
    end
end
if ceiling > 0 then
    redis.call('zadd', KEYS[2], now + tonumber(ARGV[4]), ARGV[2])
    redis.call('pexpire', KEYS[2], tonumber(ARGV[4]) + 60000)
    redis.call('zrem', KEYS[5], ARGV[1])
    return {'ok', tostring(wait), '1'}
end
return {'ok', tostring(wait), '0'}
"""
# A call ended: its seat goes back, and as many waiters as seats are free are woken. KEYS seats, waiters;
# ARGV the seat, the ceiling. Returns the woken orders.
LEAVE = """
redis.call('zrem', KEYS[1], ARGV[1])
local t = redis.call('time')
redis.call('zremrangebyscore', KEYS[1], '-inf', t[1] * 1000 + t[2] / 1000)
local free = tonumber(ARGV[2]) - redis.call('zcard', KEYS[1])
if free < 1 then return {} end
local popped = redis.call('zpopmin', KEYS[2], free)
local woken = {}
for i = 1, #popped, 2 do woken[#woken + 1] = popped[i] end
return woken
"""
# The seats of calls still in flight, leased again: KEYS seats; ARGV the lease (ms), then the seats (only those
# still there: one the ceiling's clean-up removed stays removed).
RENEW = """
local t = redis.call('time')
local lease_end = t[1] * 1000 + t[2] / 1000 + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('zadd', KEYS[1], 'XX', lease_end, ARGV[i]) end
redis.call('pexpire', KEYS[1], tonumber(ARGV[1]) + 60000)
return 1
"""
# A pause is kept at the latest time any provider answer named.
PAUSE = """
local left = redis.call('pttl', KEYS[1])
if left < tonumber(ARGV[1]) then redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[1]) end
return 1
"""


def redis_key(kind: str, provider: str) -> str:
    """The Redis key of one of a provider's limits: its ``rate`` (TAT), ``seats``, ``pause``, the turns ``booked``
    for deferred orders, and the orders ``waiting`` for a seat."""
    return f"{PREFIX}:{kind}:{provider}"


def _keys(provider: str) -> list[str]:
    return [redis_key(kind, provider) for kind in ("pause", "seats", "rate", "booked", "waiting")]


@dataclass(frozen=True)
class Pass:
    """Whether a call may go now: if so, its ``seat`` to give back and when its ``turn`` is (``time.monotonic()``;
    None without a rate); if not, in how many seconds to try again, why, and whether the order is ``waiting`` for a
    seat (a call that ends wakes it)."""

    allowed: bool
    defer: float = 0.0
    why: str = ""
    seat: str | None = None
    turn: float | None = None
    waiting: bool = False


class SharedLimits:
    """One per worker process, over the broker's Redis (none for another broker: per-process caps only).

    ``seat_lease``: how long a seat is kept without renewal (``renew_seats``, with the claims): how soon a dead
    worker's seat frees. ``horizon`` and ``sweep_interval`` say how a deferred order comes back (a countdown within
    the horizon, else the sweep), so that it is due again just before its booked turn."""

    def __init__(
        self,
        broker_url: str,
        rates: dict[str, str],
        ceilings: dict[str, int],
        *,
        seat_lease: float = 60.0,
        horizon: float = 20.0,
        sweep_interval: float = 15.0,
    ):
        self.rates = {provider: parse_rate(rate) for provider, rate in rates.items()}
        self.named = dict(rates)
        self.ceilings = dict(ceilings)
        self.seat_lease = seat_lease
        self.horizon, self.sweep_interval = horizon, sweep_interval
        self.degraded: str | None = None  # why the shared limits are not in force right now
        self._stray: dict[tuple[str, str], float] = {}  # seats a lost answer may have taken: (provider, seat) -> when
        self._seats: dict[str, str] = {}  # the seats this process's calls hold now: seat -> provider
        self._seats_lock = threading.Lock()
        self.redis = None
        if broker_url.startswith(("redis://", "rediss://")):  # a pause a provider asks for holds even unlimited ones
            self.redis = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
            self._enter = self.redis.register_script(ENTER)
            self._leave = self.redis.register_script(LEAVE)
            self._renew = self.redis.register_script(RENEW)
        elif rates or ceilings:
            self.degraded = "the broker is not Redis: per-process caps only"

    def _decide(self, provider: str, order: str, seat: str | None, *, book: bool) -> tuple[str, float, str, float]:
        """Run the decision; (kind, seconds, detail, ``time.monotonic()`` when Redis answered)."""
        spacing, burst = self.rates.get(provider, (0.0, 1))
        args = [
            order,
            seat or "",
            self.ceilings.get(provider, 0) if seat else 0,
            int(self.seat_lease * 1000),
            spacing * 1000,
            burst,
            LONGEST_WAIT * 1000,
            BOOK_AHEAD * 1000 if book else 0,
            LATE * 1000,
        ]
        kind, ms, detail = self._enter(keys=_keys(provider), args=args)
        return kind.decode(), float(ms) / 1000, detail.decode("utf-8", "replace"), time.monotonic()

    def enter(self, provider: str, order: str = "") -> Pass:
        """Whether ``order`` may call ``provider`` now (its seat and its turn taken if so), or how long to defer it."""
        if self.redis is None:
            return Pass(True)
        seat = uuid.uuid4().hex if provider in self.ceilings else None
        if self._stray:
            self._tidy()
        try:
            kind, seconds, detail, answered = self._decide(provider, order, seat, book=bool(order))
        except redis.RedisError as exc:
            self._away(exc)
            if seat is not None:  # the script may yet run and take it (its answer was lost, not its command)
                self._stray[(provider, seat)] = time.monotonic()
            return Pass(True)
        self._back()
        if kind != "ok":
            return self._held(provider, order, kind, seconds, detail)
        turn = answered + seconds if provider in self.rates else None
        if detail != "1":
            return Pass(True, turn=turn)
        with self._seats_lock:
            self._seats[seat] = provider
        return Pass(True, seat=seat, turn=turn)

    def _held(self, provider: str, order: str, kind: str, seconds: float, detail: str) -> Pass:
        """What a decision other than "ok" means: how long to defer the order, and why."""
        if kind == "paused":
            return Pass(False, self._spread(seconds), f"{provider} is paused for every worker: {detail}")
        if kind == "full":
            why = f"{provider}'s ceiling of {self.ceilings[provider]} calls in flight"
            return Pass(False, max(SHORTEST_DEFER, min(FULL_RETRY, seconds)), why, waiting=True)
        rate = f"{provider}'s rate of {self.named[provider]}"
        if kind == "booked":
            return Pass(False, self._due_before(seconds), f"{rate}: its turn is booked, {seconds:.1f}s from now")
        # beyond the turns that may be booked: back when its turn can be
        defer = seconds - BOOK_AHEAD + 1.0 if order else seconds
        return Pass(False, max(SHORTEST_DEFER, defer), f"{rate}: the next turn is {seconds:.0f}s away")

    def _due_before(self, seconds: float) -> float:
        """How long to defer an order whose booked turn is ``seconds`` away, so that it is in hand at its turn: a
        countdown within the horizon; beyond it the sweep sends it, up to a sweep interval late, so earlier."""
        if seconds - LEAD <= self.horizon:
            return max(SHORTEST_DEFER, seconds - LEAD)
        return seconds - min(self.horizon, self.sweep_interval + 2.0)

    @staticmethod
    def _spread(seconds: float) -> float:
        """When an order a pause holds comes back: after the pause, at a random point of the following second or
        more (as long as the pause, up to PAUSE_SPREAD), so that its end is no herd."""
        return seconds + random.uniform(0.0, min(PAUSE_SPREAD, max(1.0, seconds)))

    async def pace(self, provider: str, order: str = "") -> None:
        """Before a request that is not the order's first: wait for the provider's next turn and take it, or raise
        HeldBack (paused, or the turn too far away: one is then booked for ``order``, which is deferred until just
        before it and makes that request first when it comes back). A Redis that cannot answer holds nothing back."""
        if self.redis is None:
            return
        try:
            kind, seconds, detail, answered = await asyncio.to_thread(
                self._decide, provider, order, None, book=bool(order)
            )
        except redis.RedisError as exc:
            self._away(exc)
            return
        if kind != "ok":
            held = self._held(provider, order, kind, seconds, detail)
            raise HeldBack(held.why, retry_after=held.defer)
        if seconds > 0:
            await asyncio.sleep(max(0.0, answered + seconds - time.monotonic()))

    async def turn(self, provider: str, at: float | None, order: str = "") -> None:
        """Before an attempt's first request (a token grant, a lookup or the create): wait for the turn the order was
        given (``at``, monotonic), or take a fresh one when it has passed by more than LATE (something else took the
        time), so that a late request never goes out on top of the next one's turn."""
        if provider not in self.rates or self.redis is None or at is None:
            return
        if time.monotonic() > at + LATE:
            await self.pace(provider, order)
            return
        await asyncio.sleep(max(0.0, at - time.monotonic()))

    def leave(self, provider: str, seat: str | None) -> list[str]:
        """Give the call's seat back; returns the orders waiting for a seat that may call now (to be sent again)."""
        if seat is None or self.redis is None:
            return []
        with self._seats_lock:
            self._seats.pop(seat, None)
        try:
            keys = [redis_key("seats", provider), redis_key("waiting", provider)]
            woken = self._leave(keys=keys, args=[seat, self.ceilings[provider]])
        except redis.RedisError as exc:
            self._away(exc)
            return []
        return [order.decode() for order in woken]

    def renew_seats(self) -> None:
        """Extend the lease of every seat this process's calls hold (on Redis's clock; every third of the lease, with
        the claims): a call keeps its seat as long as it lasts, and a dead worker's seat frees within one lease."""
        with self._seats_lock:
            held = list(self._seats.items())
        if not held or self.redis is None:
            return
        by_provider: dict[str, list[str]] = {}
        for seat, provider in held:
            by_provider.setdefault(provider, []).append(seat)
        try:
            for provider, seats in by_provider.items():
                self._renew(keys=[redis_key("seats", provider)], args=[int(self.seat_lease * 1000), *seats])
        except redis.RedisError as exc:
            self._away(exc)

    def _tidy(self) -> None:
        """Give back the seats a script took when its answer never came (Redis answered too late, or went away after
        it ran): removed once Redis answers again, which it does only after it ran the command it had in hand. One
        not found for a minute was never taken."""
        for (provider, seat), since in list(self._stray.items()):
            try:
                removed = self.redis.zrem(redis_key("seats", provider), seat)
            except redis.RedisError:
                return
            if removed or time.monotonic() - since > 60.0:
                del self._stray[(provider, seat)]

    def pause(self, provider: str, seconds: float, why: str = "it asked for a pause (Retry-After)") -> None:
        """No worker calls ``provider`` for ``seconds`` (bounded: see ``providers.base.bounded_wait``): it asked (429
        or 503 with Retry-After), or a worker's circuit opened. Never raises."""
        seconds = bounded_wait(seconds)
        if self.redis is None or seconds <= 0:
            return
        try:
            self.redis.eval(PAUSE, 1, redis_key("pause", provider), max(1, int(seconds * 1000)), why[:200])
            log.warning("%s paused for %.1fs, for every worker: %s", provider, seconds, why)
        except redis.RedisError as exc:
            self._away(exc)

    def _away(self, exc: Exception) -> None:
        why = f"Redis cannot answer for the limits ({type(exc).__name__}): per-process caps only"
        if self.degraded != why:
            log.warning(why)
        self.degraded = why

    def _back(self) -> None:
        if self.degraded and self.redis is not None:
            log.warning("shared provider limits in force again")
            self.degraded = None


def client(broker_url: str) -> redis.Redis:
    return redis.Redis.from_url(broker_url, socket_timeout=3, socket_connect_timeout=3)


def view(broker_url: str, providers: list[str], rates: dict[str, str], ceilings: dict[str, int]) -> dict[str, dict]:
    """Each provider's limits (every provider: any may be paused), its turns booked ahead, its calls in flight and
    waiters, and any pause with its reason (for ``status``, ``orderrelay limits`` and the metrics); {"_": {"error":
    ...}} where they cannot be read."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return {"_": {"error": "the broker is not Redis: per-process caps only"}} if rates or ceilings else {}
    shown = {}
    try:
        redis_client = client(broker_url)
        now_s, now_us = redis_client.time()
        now_ms = now_s * 1000 + now_us / 1000
        for provider in sorted(set(providers) | set(rates) | set(ceilings)):
            entry: dict = {}
            if provider in rates:
                entry["rate"] = rates[provider]
                # how far ahead the next turn is booked: 0 when the provider is idle, ~burst x spacing when busy
                tat = float(redis_client.get(redis_key("rate", provider)) or 0)
                entry["booked_ahead_s"] = round(max(0.0, tat - now_ms) / 1000, 3)
                entry["orders_booked"] = redis_client.hlen(redis_key("booked", provider))
            if provider in ceilings:
                redis_client.zremrangebyscore(redis_key("seats", provider), "-inf", now_ms)
                entry["ceiling"] = ceilings[provider]
                entry["in_flight"] = redis_client.zcard(redis_key("seats", provider))
                entry["waiting"] = redis_client.zcard(redis_key("waiting", provider))
            paused = redis_client.pttl(redis_key("pause", provider))
            entry["paused_for"] = round(paused / 1000, 1) if paused > 0 else 0
            if paused > 0:
                reason = redis_client.get(redis_key("pause", provider)) or b""
                entry["pause_reason"] = reason.decode("utf-8", "replace")
            shown[provider] = entry
    except redis.RedisError as exc:
        return {"_": {"error": f"Redis cannot answer for the limits: {type(exc).__name__}"}}
    return shown


def pause(broker_url: str, provider: str, seconds: float, why: str) -> float:
    """An operator pauses a provider for every worker (bounded as a provider's pause is); the seconds it holds."""
    seconds = bounded_wait(seconds)
    client(broker_url).eval(PAUSE, 1, redis_key("pause", provider), max(1, int(seconds * 1000)), why[:200])
    return seconds


def resume(broker_url: str, provider: str) -> bool:
    """An operator lifts a provider's pause; whether there was one."""
    return bool(client(broker_url).delete(redis_key("pause", provider)))
