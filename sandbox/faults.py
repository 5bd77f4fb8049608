"""Scripted faults, per provider, applied to create-order calls.

A script is a list consumed one entry per create-order request:
  ``200`` (or ``"ok"``)      answer normally;
  ``500``, ``503``, ...       answer that status without making anything. It is the answer of a gateway in front of
                              the API, so it is *not* kept under the idempotency key - except by a provider that
                              replays every answer it gives (Adobe: ``State.replays_failures``), for which it is
                              the provider's own answer, kept and replayed for the same key;
  ``{"status": 429, "retry_after": 2}``  the same, with a ``Retry-After`` header;
  ``{"status": 500, "stored": true}``    the API itself failed: the answer is kept under the key and replayed
                              (as Extend documents for its own 500s);
  ``{"status": 503, "gateway": true}``   a gateway's answer even at a provider that replays its own;
  ``"drop"``                  close the connection without answering and without making anything;
  ``"drop_after_create"``     make the order, then close the connection without answering;
  ``{"status": 502, "after_create": true}``  make the order, then answer 502 instead (a gateway or a crash after
                              the commit); the provider keeps the real answer under the key, or with
                              ``"stored": true`` (its own crash after the commit) the failure;
  ``{"after_create": true, "delay": 7}``     make the order, then answer only after 7 s (longer than a lease);
  ``{"after_create": true, "patch": {"response.status": NaN}}``  make the order, then answer with values set by
                              path (what a hostile provider answers: NaN, a lone surrogate, an object where text was);
  ``"delay"`` also combines with a status or ``"drop": true``.
``latency_ms`` delays every create-order request before it is handled (nothing is made during the wait).

``lookup_script`` is the same for the provider's lookup (Extend's search, Webroot's cart read), one entry per
lookup request: a status answers it with that status, ``"drop"`` closes the connection, ``"stale"`` answers as
if nothing had been made yet (a read that lags behind the write).

``token_script`` is the same for the provider's token endpoint (every provider that grants tokens), one entry per
token request: a status answers it (``{"status": 503, "retry_after": 2}`` too), ``"drop"`` closes the connection,
``{"delay": 40}`` answers only after 40 s (longer than a client's read timeout: a timeout), ``"not_json"`` answers
200 with an HTML page, ``{"token": "tok\\nen"}`` answers 200 with that token. Token requests are counted
(``token_requests``).
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

STEP_KEYS = {
    "status",
    "retry_after",
    "stored",
    "gateway",
    "drop",
    "after_create",
    "delay",
    "location",
    "not_json",
    "token",
    "patch",
}


@dataclass
class Fault:
    """One scripted step."""

    status: int = 200
    retry_after: float | None = None
    stored: bool = False  # the provider's own answer, kept under the idempotency key and replayed
    gateway: bool = False  # a gateway's answer: the provider keeps nothing of it
    drop: bool = False  # close the connection instead of answering
    after_create: bool = False  # make the order first
    delay: float = 0.0  # seconds to wait (after making the order) before answering
    stale: bool = False  # a lookup answers as if nothing had been made yet
    location: str | None = None  # a redirect's Location header (the receiver's ``{"status": 307, ...}``)
    not_json: bool = False  # a 200 whose body is an HTML page (a token endpoint's maintenance page)
    token: str | None = None  # a token endpoint's answer: 200 with this access token (one with a control character)
    patch: dict | None = None  # after_create: the answer with these values set, by dotted path (a hostile provider)

    @property
    def drop_after_create(self) -> bool:
        return self.drop and self.after_create


def parse_step(step: Any) -> Fault:
    if step in (200, "ok"):
        return Fault()
    if step == "stale":
        return Fault(stale=True)
    if step == "drop":
        return Fault(drop=True)
    if step == "drop_after_create":
        return Fault(drop=True, after_create=True)
    if step == "not_json":
        return Fault(not_json=True)
    if isinstance(step, int) and not isinstance(step, bool) and 100 <= step <= 599:
        return Fault(status=step)
    if isinstance(step, dict) and not set(step) - STEP_KEYS:
        status = step.get("status", 200)
        delay = step.get("delay", 0)
        if isinstance(status, int) and 100 <= status <= 599 and isinstance(delay, int | float) and delay >= 0:
            return Fault(
                status=status,
                retry_after=step.get("retry_after"),
                stored=bool(step.get("stored")),
                gateway=bool(step.get("gateway")),
                drop=bool(step.get("drop")),
                after_create=bool(step.get("after_create")),
                delay=float(delay),
                location=step.get("location"),
                not_json=bool(step.get("not_json")),
                token=step.get("token"),
                patch=step.get("patch"),
            )
    raise ValueError(f"not a fault step: {step!r}")


@dataclass
class Faults:
    """The fault script and latency of one provider."""

    latency_ms: float = 0.0
    script: deque = field(default_factory=deque)
    lookup_script: deque = field(default_factory=deque)
    token_script: deque = field(default_factory=deque)

    def set(self, config: dict) -> None:
        self.latency_ms = float(config.get("latency_ms", self.latency_ms))
        for name in ("script", "lookup_script", "token_script"):
            if name in config:
                setattr(self, name, deque(parse_step(s) for s in config[name]))

    async def next(self) -> Fault:
        """The step for this request, after the configured latency."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        return self.script.popleft() if self.script else Fault()

    def next_lookup(self) -> Fault:
        return self.lookup_script.popleft() if self.lookup_script else Fault()

    def next_token(self) -> Fault:
        return self.token_script.popleft() if self.token_script else Fault()


def patched(response: web.Response, patch: dict) -> web.Response:
    """The answer with each dotted path of ``patch`` set to its value (NaN, a lone surrogate, an object ...: what a
    hostile or broken provider may answer), in JSON as Python writes it."""
    body = json.loads(response.body)
    for path, value in patch.items():
        *parents, last = path.split(".")
        node = body
        for part in parents:
            node = node[part]
        node[last] = value
    return web.Response(status=response.status, text=json.dumps(body), content_type="application/json")


def drop(request: web.Request) -> web.Response:
    """Close the client's connection without an answer."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)


def fault_response(fault: Fault, body: dict) -> web.Response:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    if fault.location:
        headers["Location"] = fault.location
    return web.json_response(body, status=fault.status, headers=headers or None)


class ProviderState:
    """What every simulated provider keeps: orders made, authenticated create calls, tokens, faults."""

    replays_failures = False  # a provider that replays every answer it gives for a key, failures included

    def __init__(self) -> None:
        self.token_ttl = 3600.0
        self.reset()

    def reset(self) -> None:
        self.tokens: dict[str, float] = {}
        self.orders: list[dict] = []
        self.faults = Faults()
        self.create_requests = 0
        self.token_requests = 0
        self.in_flight = 0  # create-order calls being answered now
        self.in_flight_peak = 0
        self.request_times: list[float] = []  # when each create-order call came (time.time())
        self.calls: list[tuple[str, float]] = []  # every call, create, lookup, token or read, and when it came
        self.rate: tuple[float, float] | None = None  # (per second, burst): the provider's own rate limit
        self.tokens_left, self.refilled = 0.0, time.monotonic()
        self.rate_limited = 0  # calls answered 429 for going over the rate

    def set_rate(self, per_second: float | None, burst: float = 1.0) -> None:
        """Enforce a rate as a provider does: a bucket of ``burst`` calls refilled ``per_second``; beyond it, 429
        with the Retry-After that a call would wait for (None lifts it)."""
        self.rate = (float(per_second), max(1.0, float(burst))) if per_second else None
        self.tokens_left, self.refilled = (self.rate[1] if self.rate else 0.0), time.monotonic()

    def over_rate(self) -> float | None:
        """None if a call may be answered now (it takes a token), else the seconds until one may."""
        if self.rate is None:
            return None
        per_second, burst = self.rate
        now = time.monotonic()
        self.tokens_left = min(burst, self.tokens_left + (now - self.refilled) * per_second)
        self.refilled = now
        if self.tokens_left >= 1:
            self.tokens_left -= 1
            return None
        return (1 - self.tokens_left) / per_second

    def forget_keys(self) -> None:
        """The provider's replay window has passed: what it answered for each key is gone (no key: nothing)."""

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

    ``replay`` answers a repeated idempotency key from what was kept; ``store`` keeps an answer the provider
    itself gave (a failure it replays) under the key, after ``create`` kept its own.
    """
    state.create_requests += 1
    state.request_times.append(time.time())
    state.calls.append(("create", state.request_times[-1]))
    wait = state.over_rate()
    if wait is not None:
        state.rate_limited += 1
        retry = max(1, math.ceil(wait))
        return web.json_response(fault_body(429), status=429, headers={"Retry-After": str(retry)})
    state.in_flight += 1
    state.in_flight_peak = max(state.in_flight_peak, state.in_flight)
    try:
        fault = await state.faults.next()
        if fault.drop and not fault.after_create:
            return drop(request)
        replayed = replay()
        if replayed is not None:
            return replayed
        own = fault.stored or (state.replays_failures and not fault.gateway)
        if fault.status != 200 and not fault.after_create:
            failure = fault_response(fault, fault_body(fault.status))
            if own:
                store(failure)
            return failure
        response = await create()
        if fault.patch:
            response = patched(response, fault.patch)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.drop:
            return drop(request)
        if fault.status != 200:
            failure = fault_response(fault, fault_body(fault.status))
            if own:  # the provider's own crash after its commit: the failure is what it replays
                store(failure)
            return failure
        return response
    finally:
        state.in_flight -= 1


def scripted_lookup(
    state: ProviderState, request: web.Request, nothing: Callable[[], web.Response]
) -> web.Response | None:
    """The lookup's scripted fault, as a response (None: answer normally); ``nothing`` answers a stale read."""
    state.calls.append(("lookup", time.time()))
    fault = state.faults.next_lookup()
    if fault.stale:
        return nothing()
    if fault.drop:
        return drop(request)
    if fault.status != 200:
        return fault_response(fault, {"message": f"scripted HTTP {fault.status}", "code": "SandboxFault"})
    return None


async def scripted_token(state: ProviderState, request: web.Request) -> web.Response | None:
    """A token request, counted, through the provider's token script: the fault's answer, or None to answer it."""
    state.token_requests += 1
    state.calls.append(("token", time.time()))
    fault = state.faults.next_token()
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.drop:
        return drop(request)
    if fault.not_json:
        return web.Response(status=200, text="<html><body>Down for maintenance</body></html>", content_type="text/html")
    if fault.token is not None:
        return web.json_response({"access_token": fault.token, "token_type": "Bearer", "expires_in": 3600})
    if fault.status != 200:
        return fault_response(fault, {"error": "server_error", "error_description": f"scripted HTTP {fault.status}"})
    return None


async def json_body(request: web.Request) -> dict:
    """An admin call's JSON body, or {} when it has none."""
    return await request.json() if request.can_read_body else {}


async def client_credentials_token(
    request: web.Request, state: ProviderState, credentials: dict, refuse: Callable[[int, str], web.Response]
) -> web.Response:
    """A token endpoint taking ``client_id`` and ``client_secret`` in a JSON body (Extend's; battleface's)."""
    scripted = await scripted_token(state, request)
    if scripted is not None:
        return scripted
    try:
        body = await request.json()
    except ValueError:
        return refuse(400, "Body must be JSON.")
    if (body.get("client_id"), body.get("client_secret")) != (credentials["CLIENT_ID"], credentials["CLIENT_SECRET"]):
        return refuse(401, "Invalid client credentials.")
    value, ttl = state.issue_token()
    return web.json_response({"access_token": value, "token_type": "Bearer", "expires_in": ttl})
