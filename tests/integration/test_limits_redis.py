"""The shared limits' scripts against a real Redis: turns spaced by the rate (a look reserves nothing), seats up
to the ceiling and back, a pause with its reason for every limiter on the same Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from orderrelay.core.limits import SharedLimits

pytestmark = pytest.mark.integration


@pytest.fixture
def provider():
    return f"p{uuid.uuid4().hex[:8]}"  # keys of its own on the tests' Redis


def test_turns_are_spaced_by_the_rate_and_a_look_reserves_nothing(broker_url, provider):
    limits = SharedLimits(broker_url, {provider: "20/second"}, {})
    assert limits._turn(provider, take=False) == 0 == limits._turn(provider, take=False)
    waits = [limits._turn(provider, take=True) for _ in range(3)]
    assert waits[0] == 0 and 0.04 <= waits[1] <= 0.05 and 0.09 <= waits[2] <= 0.1
    started = time.monotonic()
    asyncio.run(limits.turn(provider))  # the fourth waits for its turn, ~150 ms after the first
    assert 0.1 <= time.monotonic() - started <= 0.2


def test_a_far_turn_defers_without_reserving(broker_url, provider):
    limits = SharedLimits(broker_url, {provider: "1/minute"}, {})
    assert limits.enter(provider).allowed
    asyncio.run(limits.turn(provider))  # the minute's one call
    later = limits.enter(provider)
    assert not later.allowed and 55 < later.defer <= 60 and "rate of 1/minute" in later.why


def test_seats_up_to_the_ceiling_for_every_limiter_on_the_redis(broker_url, provider):
    one, other = SharedLimits(broker_url, {}, {provider: 2}), SharedLimits(broker_url, {}, {provider: 2})
    first, second = one.enter(provider), other.enter(provider)
    assert first.allowed and second.allowed
    third = one.enter(provider)
    assert not third.allowed and "ceiling of 2" in third.why
    other.leave(provider, second.seat)
    assert one.enter(provider).allowed


def test_a_pause_holds_every_limiter_with_its_reason(broker_url, provider):
    one, other = SharedLimits(broker_url, {}, {}), SharedLimits(broker_url, {}, {})
    one.pause(provider, 2, "a worker's circuit opened after 5 failures")
    held = other.enter(provider)
    assert not held.allowed and 1.5 < held.defer <= 2 and "circuit opened" in held.why
    one.pause(provider, 0.5)  # a shorter pause never cuts a longer one
    assert other.enter(provider).defer > 1.0
