"""Per-process protection of each provider: a cap on calls in flight and a circuit breaker.

A provider that keeps failing (retryable or in-doubt outcomes, ``failures`` in a row) is not called for
``cooldown`` seconds; its orders are deferred, not failed, and no attempt is spent on them. Then one probe
call goes through (half-open): success closes the circuit, failure opens it again. A permanent refusal (4xx)
counts as the provider being up.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class Circuit:
    """One provider's breaker in this process."""

    state: str = "closed"
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


@dataclass(frozen=True)
class Gate:
    """Whether a call may go out now; when not, how long to defer the order."""

    allowed: bool
    defer: float = 0.0
    reason: str = ""


class Guard:
    """Caps and breakers for every provider, shared by the threads of one process."""

    def __init__(self, *, max_in_flight: int, failures: int, cooldown: float):
        self.max_in_flight = max_in_flight
        self.threshold = failures
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._circuits: dict[str, Circuit] = {}
        self._in_flight: dict[str, int] = {}

    def enter(self, provider: str) -> Gate:
        """Take a slot for one call, or say why not and for how long to defer."""
        now = time.monotonic()
        with self._lock:
            circuit = self._circuits.setdefault(provider, Circuit())
            if circuit.state == "open" and now < circuit.open_until:
                return Gate(False, circuit.open_until - now, f"circuit open after {circuit.failures} failures")
            if circuit.state == "open":
                circuit.state, circuit.probing = "half_open", False
            if circuit.state == "half_open":
                if circuit.probing:
                    return Gate(False, min(self.cooldown, 5.0), "circuit half-open: a probe call is out")
                circuit.probing = True
            if self._in_flight.get(provider, 0) >= self.max_in_flight:
                if circuit.state == "half_open":
                    circuit.probing = False
                return Gate(False, 1.0, f"{self.max_in_flight} calls already in flight")
            self._in_flight[provider] = self._in_flight.get(provider, 0) + 1
            return Gate(True)

    def leave(self, provider: str, *, healthy: bool) -> Circuit | None:
        """Give the slot back and record the outcome; returns the circuit when its state changed."""
        with self._lock:
            self._in_flight[provider] -= 1
            circuit = self._circuits[provider]
            before = circuit.state
            if healthy:
                circuit.state, circuit.failures, circuit.probing = "closed", 0, False
            else:
                circuit.failures += 1
                if circuit.state == "half_open" or circuit.failures >= self.threshold:
                    circuit.state, circuit.probing = "open", False
                    circuit.open_until = time.monotonic() + self.cooldown
            return Circuit(**vars(circuit)) if circuit.state != before else None

    def cancel(self, provider: str) -> None:
        """Give back a slot taken for a call that was not made (its order was not claimed, or the shared limits held
        it back): it says nothing of the provider's health; a half-open circuit lets another probe go."""
        with self._lock:
            self._in_flight[provider] = max(0, self._in_flight.get(provider, 0) - 1)
            circuit = self._circuits.get(provider)
            if circuit is not None and circuit.state == "half_open":
                circuit.probing = False

    def snapshot(self) -> dict[str, Circuit]:
        with self._lock:
            return {p: Circuit(**vars(c)) for p, c in self._circuits.items()}
