"""Scripted faults, per provider, applied to create-order calls.

A script is a list consumed one entry per create-order request:
  ``200`` (or ``"ok"``)      answer normally;
  ``500``, ``503``, ...       answer that status without creating anything (like a gateway in front of the API),
                              so it is *not* stored under the idempotency key;
  ``{"status": 429, "retry_after": 2}``  the same, with a ``Retry-After`` header;
  ``{"status": 500, "stored": true}``    the API itself failed: the answer is stored under the idempotency key
                              and replayed, as Extend documents;
  ``"drop"``                  close the connection without answering and without creating;
  ``"drop_after_create"``     create the order, then close the connection without answering.
``latency_ms`` delays every create-order answer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Fault:
    """One scripted step."""

    status: int = 200
    retry_after: float | None = None
    stored: bool = False
    drop: bool = False
    drop_after_create: bool = False


def parse_step(step: Any) -> Fault:
    if step in (200, "ok"):
        return Fault()
    if step == "drop":
        return Fault(drop=True)
    if step == "drop_after_create":
        return Fault(drop_after_create=True)
    if isinstance(step, int) and 100 <= step <= 599:
        return Fault(status=step)
    if isinstance(step, dict) and isinstance(step.get("status"), int):
        return Fault(status=step["status"], retry_after=step.get("retry_after"), stored=bool(step.get("stored")))
    raise ValueError(f"not a fault step: {step!r}")


@dataclass
class Faults:
    """The fault script and latency of one provider."""

    latency_ms: float = 0.0
    script: deque = field(default_factory=deque)

    def set(self, config: dict) -> None:
        self.latency_ms = float(config.get("latency_ms", self.latency_ms))
        if "script" in config:
            self.script = deque(parse_step(s) for s in config["script"])

    async def next(self) -> Fault:
        """The step for this request, after the configured latency."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        return self.script.popleft() if self.script else Fault()


def drop(request: web.Request) -> web.Response:
    """Close the client's connection without an answer."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)


def fault_response(fault: Fault, body: dict) -> web.Response:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    return web.json_response(body, status=fault.status, headers=headers)
