"""The shared limits' one script against a real Redis: a look is a take (a herd cannot all pass a look), far turns
booked for their orders, seats up to the ceiling on Redis's clock and the waiters they wake, a pause with its
reason for every limiter, bounded."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

import pytest
import redis

from orderrelay.core.limits import BOOK_AHEAD, LEAD, SharedLimits, redis_key, view
from orderrelay.foundation.errors import HeldBack
from orderrelay.providers.base import LONGEST_RETRY_AFTER

pytestmark = pytest.mark.integration


@pytest.fixture
def provider():
    return f"p{uuid.uuid4().hex[:8]}"  # keys of its own on the tests' Redis


def test_a_look_is_a_take_so_a_herd_gets_spaced_turns_or_booked_ones(broker_url, provider):
    limits = SharedLimits(broker_url, {provider: "20/second"}, {})
    herd = [limits.enter(provider, f"order-{n}") for n in range(40)]
    now = time.monotonic()
    turns = sorted(p.turn - now for p in herd if p.allowed)
    assert len(turns) == 21  # the turns within LONGEST_WAIT (1 s at 50 ms): each taken as it was looked at
    assert all(0.045 <= b - a <= 0.055 for a, b in itertools.pairwise(turns)), turns
    booked = [p for p in herd if not p.allowed]
    assert len(booked) == 19 and all("booked" in p.why for p in booked)
    # each deferred order comes back just before its own turn, one spacing after the one before it
    defers = [p.defer for p in booked]
    assert all(0.045 <= b - a <= 0.055 for a, b in itertools.pairwise(defers)), defers
    assert 0.5 <= defers[0] <= 1.05 - LEAD + 0.01  # its turn (1.05 s after the first look), less the lead


def test_a_booked_turn_is_the_orders_own_when_it_comes_back(broker_url, provider):
    limits = SharedLimits(broker_url, {provider: "4/second"}, {})
    for n in range(5):  # 0, 0.25, ... 1.0 s: the next turn is 1.25 s away
        assert limits.enter(provider, f"first-{n}").allowed
    later = limits.enter(provider, "later")
    assert not later.allowed and 1.25 - LEAD - 0.01 <= later.defer <= 1.25 - LEAD + 0.01
    early = limits.enter(provider, "later")  # back too early (a stray message): still its booked turn, no new one
    assert not early.allowed and early.defer <= later.defer
    assert view(broker_url, [provider], {provider: "4/second"}, {})[provider]["orders_booked"] == 1
    time.sleep(later.defer)
    back = limits.enter(provider, "later")
    assert back.allowed and 0.2 <= back.turn - time.monotonic() <= LEAD + 0.01  # its own turn, not a new one behind


def test_turns_beyond_what_may_be_booked_are_not_taken(broker_url, provider):
    limits = SharedLimits(broker_url, {provider: "1/hour"}, {})
    assert limits.enter(provider, "a").allowed  # the hour's one call
    assert "booked" in limits.enter(provider, "b").why  # the next hour's, booked for b (BOOK_AHEAD is an hour)
    far = limits.enter(provider, "c")
    assert not far.allowed and "next turn" in far.why and far.defer <= 7200 - BOOK_AHEAD + 1
    with pytest.raises(HeldBack):  # a token grant or a lookup neither books nor waits for an hour
        asyncio.run(limits.pace(provider))


def test_pace_waits_for_a_near_turn_on_redis_time(broker_url, provider):
    limits = SharedLimits(broker_url, {provider: "10/second"}, {})
    started = time.monotonic()
    for _ in range(4):
        asyncio.run(limits.pace(provider))
    assert 0.29 <= time.monotonic() - started <= 0.6  # 0, 0.1, 0.2, 0.3


def test_seats_up_to_the_ceiling_on_redis_clock_and_a_leaving_call_wakes_the_waiters(broker_url, provider):
    one, other = (SharedLimits(broker_url, {}, {provider: 2}, seat_lease=900) for _ in range(2))
    first, second = one.enter(provider, "a"), other.enter(provider, "b")
    assert first.allowed and second.allowed
    held = [one.enter(provider, "c"), other.enter(provider, "d")]
    assert all(not h.allowed and h.waiting and "ceiling of 2" in h.why for h in held)
    assert all(h.defer == 30.0 for h in held)  # no call ends: back in 30 s, not every half second
    client = redis.Redis.from_url(broker_url)
    seconds, micros = client.time()
    seats = client.zrange(redis_key("seats", provider), 0, -1, withscores=True)
    leases = [(score - (seconds * 1000 + micros / 1000)) / 1000 for _, score in seats]
    assert len(leases) == 2 and all(899 <= lease <= 900 for lease in leases), leases  # on Redis's clock
    assert other.leave(provider, second.seat) == ["c"]  # the first waiter, woken as the seat frees
    assert one.enter(provider, "c").allowed


def test_a_pause_holds_every_limiter_with_its_reason_and_is_bounded(broker_url, provider):
    one, other = SharedLimits(broker_url, {}, {}), SharedLimits(broker_url, {}, {})
    one.pause(provider, 2, "a worker's circuit opened after 5 failures")
    held = other.enter(provider, "x")
    assert not held.allowed and 2 - 0.1 < held.defer <= 2 * 2 and "circuit opened" in held.why
    one.pause(provider, 0.5)  # a shorter pause never cuts a longer one
    assert other.enter(provider, "x").defer > 1.5
    for absurd in (float("inf"), float("nan"), 1e400, 1e12):
        one.pause(provider, absurd)  # never raises
    shown = view(broker_url, [provider], {}, {})[provider]
    assert LONGEST_RETRY_AFTER - 5 <= shown["paused_for"] <= LONGEST_RETRY_AFTER
    assert "Retry-After" in shown["pause_reason"]
