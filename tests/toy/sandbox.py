"""The toy provider, simulated: ``POST /orders`` with the bearer token makes an order, once per key."""

from __future__ import annotations

import itertools

from aiohttp import web

from orderrelay.sandbox.faults import ProviderState, json_body, scripted_create

CREDENTIALS = {"TOKEN": "sandbox-toy-token"}
REF_FIELD = "id"


def natural(record: dict) -> str:
    return record["reference"]


class State(ProviderState):
    def reset(self) -> None:
        super().reset()
        self.results: dict[str, dict] = {}
        self._ids = itertools.count(1)


def make_app(state: State) -> web.Application:
    app = web.Application()
    routes = web.RouteTableDef()

    @routes.post("/orders")
    async def create(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {CREDENTIALS['TOKEN']}":
            return web.json_response({"error": "unauthenticated"}, status=401)
        key = request.headers.get("Idempotency-Key", "")
        body = await json_body(request)

        async def make() -> web.Response:
            if key not in state.results:
                state.results[key] = {"id": f"TOY-{next(state._ids)}", "status": "made", **body}
                state.orders.append(state.results[key])
            return web.json_response(state.results[key], status=201)

        return await scripted_create(state, request, make, lambda status: {"error": f"scripted HTTP {status}"})

    app.add_routes(routes)
    return app


def make_admin(state: State) -> web.RouteTableDef:
    return web.RouteTableDef()
