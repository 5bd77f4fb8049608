"""A checkout system's webhook receiver, simulated, under ``/_receiver/``: it records every delivery
(headers and raw body) and answers as scripted (``POST /_sandbox/receiver/faults`` ``{"script": [500, 500]}``, or
a redirect: ``{"script": [{"status": 307, "location": "http://..."}]}``;
``GET /_sandbox/receiver/received`` lists what came)."""

from __future__ import annotations

import json

from aiohttp import web

from orderrelay.sandbox.faults import ProviderState, scripted_create


class State(ProviderState):
    """What the receiver got."""


def make_app(state: State) -> web.Application:
    app = web.Application()

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()

        async def record() -> web.Response:
            state.orders.append({"path": request.path, "headers": dict(request.headers), "body": raw.decode()})
            return web.json_response({"received": True})

        return await scripted_create(state, request, record, lambda status: {"error": f"scripted HTTP {status}"})

    app.router.add_post("/{name}", receive)
    return app


def make_admin(state: State) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/_sandbox/receiver/received")
    async def received(request: web.Request) -> web.Response:
        return web.json_response([{**d, "json": json.loads(d["body"] or "null")} for d in state.orders])

    return routes
