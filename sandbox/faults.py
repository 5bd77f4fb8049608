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
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
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


class ProviderState:
    """What every simulated provider keeps: orders made, authenticated create calls, tokens, faults."""

    def __init__(self) -> None:
        self.token_ttl = 3600.0
        self.reset()

    def reset(self) -> None:
        self.tokens: dict[str, float] = {}
        self.orders: list[dict] = []
        self.faults = Faults()
        self.create_requests = 0
        self.in_flight = 0  # create-order calls being answered now
        self.in_flight_peak = 0

    def issue_token(self) -> tuple[str, float]:
        value = secrets.token_urlsafe(24)
        self.tokens[value] = time.monotonic() + self.token_ttl
        return value, self.token_ttl

    def token_ok(self, token: str | None) -> bool:
        return token is not None and self.tokens.get(token, 0) > time.monotonic()


async def scripted_create(
    state: ProviderState,
    request: web.Request,
    create: Callable[[], Awaitable[web.Response]],
    fault_body: Callable[[int], dict],
    *,
    replay: Callable[[], web.Response | None] = lambda: None,
    store: Callable[[web.Response], None] = lambda response: None,
) -> web.Response:
    """A create-order call run through the provider's fault script (see the module's docstring).

    ``replay`` answers a repeated idempotency key from what was stored; ``store`` keeps a fault the API
    itself produced (``stored``) under the key.
    """
    state.create_requests += 1
    state.in_flight += 1
    state.in_flight_peak = max(state.in_flight_peak, state.in_flight)
    try:
        fault = await state.faults.next()
        if fault.drop:
            return drop(request)
        replayed = replay()
        if replayed is not None:
            return replayed
        if fault.status != 200:
            response = fault_response(fault, fault_body(fault.status))
            if fault.stored:
                store(response)
            return response
        response = await create()
        if fault.drop_after_create:
            return drop(request)
        return response
    finally:
        state.in_flight -= 1


async def json_body(request: web.Request) -> dict:
    """An admin call's JSON body, or {} when it has none."""
    return await request.json() if request.can_read_body else {}


async def client_credentials_token(
    request: web.Request, state: ProviderState, credentials: dict, refuse: Callable[[int, str], web.Response]
) -> web.Response:
    """A token endpoint taking ``client_id`` and ``client_secret`` in a JSON body (Extend's; battleface's)."""
    try:
        body = await request.json()
    except ValueError:
        return refuse(400, "Body must be JSON.")
    if (body.get("client_id"), body.get("client_secret")) != (credentials["CLIENT_ID"], credentials["CLIENT_SECRET"]):
        return refuse(401, "Invalid client credentials.")
    value, ttl = state.issue_token()
    return web.json_response({"access_token": value, "token_type": "Bearer", "expires_in": ttl})
