"""Extend's API, simulated (seed 001 and PROVIDERS.md), under ``/extend``.

- ``POST /auth/oauth/token``: client credentials in a JSON body; answers ``access_token`` and ``expires_in``
  (the sandbox's token lifetime, default 3600 s). Unknown credentials: 401.
- ``POST /orders``: needs ``X-Extend-Access-Token`` (401 otherwise), ``Accept: application/json;
  version=2022-02-01`` (406 otherwise) and a UUID ``X-Idempotency-Key`` (400 otherwise). Validation failures
  answer 400 ``{"code": "ValidationError", "message", "errors": {path: [messages]}}`` and are not stored.
  The first result for a key is stored and replayed; the same key with another body answers 409
  (Extend does not document that status; this is the sandbox's choice).
- ``GET /orders/search?transactionId=``: ``{"orders": [...]}``, every order with that ``transactionId`` (whatever
  its key), each as it was sent plus ``id``, ``status``, ``createdAt`` and, per line, ``id``, ``type`` and
  ``status`` (Extend's order object is not public; the sandbox's choice is to echo what was sent).
Choices where Extend is silent: order ``status`` is ``pending`` when a ``transactionDelay`` is sent, else
``open`` when any line is ``unfulfilled``, else ``closed``; a line is ``contract`` (product + plan), ``lead``
(product alone), ``non_warrantable`` (product alone whose id starts with ``NW-``) or ``shipping_protection``.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid

from aiohttp import web
from marshmallow import ValidationError

from orderrelay.sandbox.faults import ProviderState, client_credentials_token, scripted_create, scripted_lookup
from orderrelay.schemas.extend import OrderSchema
from orderrelay.schemas.fields import flatten_errors

VERSION = "version=2022-02-01"
REF_FIELD = "id"  # the field of a record here that holds the reference orderrelay records


def natural(record: dict) -> str | None:
    """What makes an order this one, in a record here or in the body sent: two records with it are one order twice."""
    return record["transactionId"]


CREDENTIALS = {"CLIENT_ID": "sandbox-client", "CLIENT_SECRET": "sandbox-secret"}


class State(ProviderState):
    """The simulated Extend: its orders, and the stored result per idempotency key."""

    def reset(self) -> None:
        super().reset()
        self.results: dict[str, tuple[str, int, dict]] = {}  # key -> (body hash, status, body)

    def forget_keys(self) -> None:
        self.results.clear()


def _error(status: int, code: str, message: str, **extra) -> web.Response:
    return web.json_response({"code": code, "message": message, **extra}, status=status)


def _line(item: dict) -> dict:
    if "quoteId" in item:
        kind = "shipping_protection"
    elif "plan" in item:
        kind = "contract"
    elif str(item["product"]["id"]).startswith("NW-"):
        kind = "non_warrantable"
    else:
        kind = "lead"
    line = {"id": str(uuid.uuid4()), "type": kind, "status": item.get("status", "fulfilled"), **item}
    if kind == "contract" and line["status"] == "fulfilled":
        line["contractId"] = str(uuid.uuid4())
    return line


ORDERS = OrderSchema()  # made once: building a schema costs more than loading an order with it


def make_app(state: State) -> web.Application:
    app = web.Application()
    routes = web.RouteTableDef()

    @routes.post("/auth/oauth/token")
    async def token(request: web.Request) -> web.Response:
        return await client_credentials_token(
            request, state, CREDENTIALS, lambda status, message: _error(status, "Unauthorized", message)
        )

    def refused(request: web.Request) -> web.Response | None:
        if not state.token_ok(request.headers.get("X-Extend-Access-Token")):
            return _error(401, "Unauthorized", "Missing, invalid or expired X-Extend-Access-Token.")
        if VERSION not in request.headers.get("Accept", ""):
            return _error(406, "NotAcceptable", f"Accept must name the API version ({VERSION}).")
        return None

    @routes.post("/orders")
    async def create(request: web.Request) -> web.Response:
        answer = refused(request)
        if answer:
            return answer
        key = request.headers.get("X-Idempotency-Key", "")
        try:
            uuid.UUID(key)
        except ValueError:
            return _error(400, "InvalidIdempotencyKey", "X-Idempotency-Key must be a UUID.")
        raw = await request.read()
        digest = hashlib.sha256(raw).hexdigest()

        def replay() -> web.Response | None:
            if key not in state.results:
                return None
            stored_digest, status, body = state.results[key]
            if stored_digest != digest:
                return _error(409, "IdempotencyKeyReused", "This idempotency key was used with another body.")
            return web.json_response(body, status=status, headers={"Idempotent-Replayed": "true"})

        def store(response: web.Response) -> None:
            state.results[key] = (digest, response.status, json.loads(response.body))

        async def make() -> web.Response:
            try:
                order = ORDERS.load(json.loads(raw))
            except (ValueError, ValidationError) as exc:
                errors = flatten_errors(exc.messages) if isinstance(exc, ValidationError) else {"_schema": [str(exc)]}
                return _error(400, "ValidationError", "The order is not valid.", errors=errors)
            lines = [_line(item) for item in order["lineItems"]]
            if "transactionDelay" in order:
                status = "pending"
            elif any(line["status"] == "unfulfilled" for line in lines):
                status = "open"
            else:
                status = "closed"
            created = {
                **order,
                "id": str(uuid.uuid4()),
                "status": status,
                "lineItems": lines,
                "createdAt": int(time.time() * 1000),
            }
            state.orders.append(created)
            state.results[key] = (digest, 201, created)
            return web.json_response(created, status=201)

        return await scripted_create(
            state,
            request,
            make,
            lambda status: {"code": "SandboxFault", "message": f"scripted HTTP {status}"},
            replay=replay,
            store=store,
        )

    @routes.get("/orders/search")
    async def search(request: web.Request) -> web.Response:
        answer = refused(request) or scripted_lookup(state, request, lambda: web.json_response({"orders": []}))
        if answer:
            return answer
        transaction_id = request.query.get("transactionId")
        if not transaction_id:
            return _error(400, "BadRequest", "transactionId is required.")
        return web.json_response({"orders": [o for o in state.orders if o["transactionId"] == transaction_id]})

    app.add_routes(routes)
    return app


def make_admin(state: State) -> web.RouteTableDef:
    """Extend needs no admin calls beyond the shared ones."""
    return web.RouteTableDef()


def seed_examples(state: State) -> None:
    """examples/extend.json needs nothing made first."""
