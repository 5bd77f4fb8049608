"""The sandbox: every provider's simulated API under its own base path, and the admin API under ``/_sandbox/``.

Admin API (for tests and the demo), for every provider:
  ``POST /_sandbox/reset``                forget every order, token, stored result and fault
  ``GET  /_sandbox/{provider}/orders``    what the provider created, how many create calls came, and the most that
                                          were being answered at once (``in_flight_peak``)
  ``POST /_sandbox/{provider}/faults``    ``{"latency_ms": 50, "script": [500, {"status": 429, "retry_after": 2},
                                          "drop_after_create", 200]}``; ``lookup_script`` and ``token_script``
                                          the same for lookups and token grants (see ``orderrelay.sandbox.faults``)
  ``POST /_sandbox/{provider}/rate``      ``{"per_second": 20, "burst": 5}``: the provider's own rate; beyond it
                                          429 with ``Retry-After`` (counted as ``rate_limited``)
  ``POST /_sandbox/{provider}/tokens``    ``{"ttl": 300}`` sets the lifetime of new tokens; ``{"expire": true}``
                                          expires every token now
  ``POST /_sandbox/{provider}/forget-keys``  the provider's replay window has passed: it forgets what it answered
                                          for every idempotency key (Extend after 24 hours, Adobe after 10 days)
and the provider's own: plan ids for Chaiz; customers, offers and status moves for Adobe; quotes and products
for battleface; carts and token grant counts for Webroot.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import ModuleType

from aiohttp import web

from orderrelay import providers
from orderrelay.sandbox import receiver


def modules() -> dict[str, ModuleType]:
    """The sandbox module of every provider in the table (``SANDBOX``), by provider id."""
    return {provider: importlib.import_module(module.SANDBOX) for provider, module in providers.REGISTRY.items()}


def provider_environment(port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """The ORDERRELAY_* variables that enable every provider of the table and point each at a sandbox on
    ``host:port``, with its credentials: every variable of the provider's ending in _URL is the sandbox's."""
    env = {"ORDERRELAY_PROVIDERS": ",".join(map(providers.entry, providers.REGISTRY))}
    for provider, module in modules().items():
        upper = provider.upper()
        for name in providers.get(provider).SETTINGS:
            if name.endswith("_URL"):
                env[f"ORDERRELAY_{upper}_{name}"] = f"http://{host}:{port}/{provider}"
        env.update({f"ORDERRELAY_{upper}_{name}": value for name, value in module.CREDENTIALS.items()})
    return env


def make_app(examples: bool = False) -> web.Application:
    """Every provider of the table under ``/<id>`` (those ORDERRELAY_PROVIDERS adds among them), and the admin API;
    with ``examples``, each provider knows the plan, customer, quote and cart ids ``examples/*.json`` name (again
    after every reset)."""
    from orderrelay.config.settings import provider_entries

    provider_entries()
    sandboxes = modules()
    states = {provider: module.State() for provider, module in sandboxes.items()}

    def seed() -> None:
        for provider, module in sandboxes.items():
            if examples and hasattr(module, "seed_examples"):
                module.seed_examples(states[provider])

    seed()
    states["receiver"] = receiver.State()
    app = web.Application(client_max_size=2 * 1024 * 1024)
    for provider, module in sandboxes.items():
        app.add_subapp(f"/{provider}", module.make_app(states[provider]))
        app.add_routes(module.make_admin(states[provider]))
    app.add_subapp("/_receiver", receiver.make_app(states["receiver"]))
    app.add_routes(receiver.make_admin(states["receiver"]))
    routes = web.RouteTableDef()

    def state_of(request: web.Request):
        provider = request.match_info["provider"]
        if provider not in states:
            raise web.HTTPNotFound(text=f"no provider {provider!r} in the sandbox")
        return states[provider]

    @routes.post("/_sandbox/reset")
    async def reset(request: web.Request) -> web.Response:
        for state in states.values():
            state.reset()
        seed()
        return web.json_response({"reset": True})

    @routes.get("/_sandbox/{provider}/orders")
    async def orders(request: web.Request) -> web.Response:
        state = state_of(request)
        return web.json_response(
            {
                "count": len(state.orders),
                "create_requests": state.create_requests,
                "token_requests": state.token_requests,
                "in_flight_peak": state.in_flight_peak,
                "rate_limited": state.rate_limited,
                "request_times": state.request_times,
                "calls": state.calls,
                "orders": state.orders,
            }
        )

    @routes.post("/_sandbox/{provider}/faults")
    async def faults(request: web.Request) -> web.Response:
        state = state_of(request)
        try:
            state.faults.set(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"latency_ms": state.faults.latency_ms, "script": len(state.faults.script)})

    @routes.post("/_sandbox/{provider}/rate")
    async def rate(request: web.Request) -> web.Response:
        """``{"per_second": 20, "burst": 5}``: the provider answers 429 with Retry-After beyond it (null lifts it)."""
        body = await request.json()
        state_of(request).set_rate(body.get("per_second"), body.get("burst", 1))
        return web.json_response({"rate": state_of(request).rate})

    @routes.post("/_sandbox/{provider}/tokens")
    async def tokens(request: web.Request) -> web.Response:
        state = state_of(request)
        body = await request.json()
        if "ttl" in body:
            state.token_ttl = float(body["ttl"])
        if body.get("expire"):
            state.tokens.clear()
        return web.json_response({"ttl": state.token_ttl})

    @routes.post("/_sandbox/{provider}/forget-keys")
    async def forget_keys(request: web.Request) -> web.Response:
        state_of(request).forget_keys()
        return web.json_response({"forgotten": True})

    @routes.get("/_sandbox/health")
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "providers": sorted(states)})

    app.add_routes(routes)
    return app


def serve(
    host: str = "127.0.0.1", port: int = 8765, ready: Callable[[], None] = lambda: None, examples: bool = False
) -> None:
    """Serve the sandbox until interrupted; ``ready`` is called once it listens."""
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    web.run_app(make_app(examples), host=host, port=port, print=lambda _banner: ready(), access_log=None)
