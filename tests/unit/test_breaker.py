"""The per-process cap on calls in flight and the circuit breaker."""

from __future__ import annotations

import time

from orderrelay.foundation.breaker import Guard


def test_calls_beyond_the_cap_are_deferred():
    guard = Guard(max_in_flight=2, failures=3, cooldown=10)
    assert guard.enter("extend").allowed
    assert guard.enter("extend").allowed
    third = guard.enter("extend")
    assert not third.allowed
    assert third.defer == 1.0
    assert guard.enter("chaiz").allowed  # another provider has its own cap
    guard.leave("extend", healthy=True)
    assert guard.enter("extend").allowed


def test_repeated_failures_open_the_circuit_then_one_probe_closes_it():
    guard = Guard(max_in_flight=10, failures=3, cooldown=0.2)
    for _ in range(2):
        assert guard.enter("extend").allowed
        assert guard.leave("extend", healthy=False) is None  # still closed
    assert guard.enter("extend").allowed
    opened = guard.leave("extend", healthy=False)
    assert opened.state == "open"
    assert opened.failures == 3
    refused = guard.enter("extend")
    assert not refused.allowed
    assert 0 < refused.defer <= 0.2
    time.sleep(0.25)
    assert guard.enter("extend").allowed  # the probe
    assert not guard.enter("extend").allowed  # only one probe at a time
    closed = guard.leave("extend", healthy=True)
    assert (closed.state, closed.failures) == ("closed", 0)
    assert guard.enter("extend").allowed


def test_a_failed_probe_opens_the_circuit_again():
    guard = Guard(max_in_flight=10, failures=1, cooldown=0.1)
    guard.enter("webroot")
    assert guard.leave("webroot", healthy=False).state == "open"
    time.sleep(0.15)
    assert guard.enter("webroot").allowed
    assert guard.leave("webroot", healthy=False).state == "open"
    assert not guard.enter("webroot").allowed


def test_a_success_resets_the_count():
    guard = Guard(max_in_flight=10, failures=2, cooldown=10)
    for healthy in (False, True, False):
        guard.enter("extend")
        assert guard.leave("extend", healthy=healthy) is None
    assert guard.snapshot()["extend"].state == "closed"
