"""The HTTP intake API. ``orderrelay api`` serves it.

``POST /orders`` validates with the worker's schemas and records the order (or the rejected job) before it
answers, so an accepted order is a row in Postgres, not only a message; then it sends the order's id to
its provider's queue. Everything else reads or acts on orders. Every answer is JSON; none is a 500 by design.

Every API key belongs to a named producer or operator (``ORDERRELAY_API_KEYS``, by hash). A producer's key
sees and acts on that producer's orders only (another's answer 404, as if they did not exist), and its
idempotency keys are its own; an operator's key acts on every order, and only it may resend an in-doubt order
blindly (``checked_by``: who checked with the provider). A metrics key reads ``/metrics`` and nothing else.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from marshmallow import ValidationError
from swagger_ui_bundle import swagger_ui_path

from orderrelay import __version__
from orderrelay.api.metrics import registry
from orderrelay.api.openapi import document
from orderrelay.api.schemas import ListQuerySchema
from orderrelay.config.settings import ApiKey, Settings, find_key
from orderrelay.core import operations, pipeline
from orderrelay.core.views import order_view
from orderrelay.foundation.constants import Status
from orderrelay.foundation.errors import ActionRefused, OrderNotFound
from orderrelay.schemas.fields import flatten_errors
from orderrelay.store import orders as store

log = logging.getLogger("orderrelay.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = ("/healthz", "/openapi.json", "/docs")
DOCS_STATIC = "/docs/static/"  # Swagger UI's files, from the swagger-ui-bundle package: nothing fetched at run time
DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>orderrelay intake API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div><script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script></body></html>
"""
METRICS_CACHE = 10.0  # seconds a scrape's figures are served again: scrapers cannot load Postgres


@dataclass
class Context:
    """What the API needs: settings, the database pool, the vault, and a way to send a place message."""

    settings: Settings
    db: Any
    vault: Any
    send_place: Callable[[Any, str, float | None], None]
    check_broker: Callable[[], None]


def error(status: int, message: str, **extra) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API keys (constant-time), and every failure as a JSON error, never an HTML page or a bare 500."""
    ctx: Context = request.app["ctx"]
    if request.path not in PUBLIC and not request.path.startswith(DOCS_STATIC) and not request.app.get("open"):
        scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
        key = find_key(ctx.settings.api_keys, offered.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            return error(401, "missing or wrong API key (Authorization: Bearer <key>)")
        if (key.role == "metrics") != (request.path == "/metrics") and key.role != "operator":
            return error(403, f"a {key.role} key may not use {request.path}")
        request["key"] = key
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return error(exc.status, exc.reason)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error(500, "internal error; it was logged")


async def _db(ctx: Context, fn: Callable, *args, **kwargs) -> Any:
    def work():
        with ctx.db.connection() as conn, conn.transaction():
            return fn(conn, *args, **kwargs)

    return await asyncio.to_thread(work)


def _scope(request: web.Request) -> Any:
    """Whose orders this request may see: every producer's for an operator's key, else the key's own."""
    key: ApiKey = request["key"]
    return store.ANY_PRODUCER if key.role == "operator" else key.name


async def _view(ctx: Context, order_id, producer: Any = store.ANY_PRODUCER) -> dict:
    return order_view(await _db(ctx, store.get_order, order_id, producer=producer))


async def submit(request: web.Request) -> web.Response:
    ctx: Context = request.app["ctx"]
    if request.content_type != "application/json":
        return error(415, "send the job as application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"the body is larger than {ctx.settings.api_max_body} bytes")
    try:
        job = json.loads(raw)
    except RecursionError:  # valid JSON nested past what any parser here reads: kept as a rejected job
        unreadable = functools.partial(pipeline.record_unreadable, producer=request["key"].name)
        step = await asyncio.to_thread(unreadable, ctx, raw, "nested too deeply to read")
        view = await _view(ctx, step.order_id)
        return error(422, "invalid job; the rejected order is recorded", order_id=view["id"], errors=view["errors"])
    except ValueError as exc:
        return error(400, f"malformed JSON: {exc}")
    header_key = request.headers.get("Idempotency-Key")
    if header_key and isinstance(job, dict):
        if job.get("idempotency_key") not in (None, header_key):
            return error(400, "the Idempotency-Key header and the body's idempotency_key differ")
        job["idempotency_key"] = header_key  # a body's null never overrides the header
    producer = request["key"].name
    step = await asyncio.to_thread(functools.partial(pipeline.intake, ctx, job, producer=producer))
    view = await _view(ctx, step.order_id)
    if step.status == Status.REJECTED and step.created:
        return error(422, "invalid job; the rejected order is recorded", order_id=view["id"], errors=view["errors"])
    if step.conflict:
        return error(409, "this idempotency key was used with another body", order_id=view["id"])
    if not step.created:
        return web.json_response(view, status=200)
    if step.provider and (step.place_now or step.countdown is not None):
        try:
            await asyncio.to_thread(ctx.send_place, step.order_id, step.provider, step.countdown)
        except Exception:  # the order is a row: the sweep sends it once the broker is back
            log.warning("order %s: could not send it to its queue now; the sweep will", step.order_id)
    return web.json_response(view, status=202, headers={"Location": f"/orders/{view['id']}"})


async def list_orders(request: web.Request) -> web.Response:
    ctx: Context = request.app["ctx"]
    try:
        query = ListQuerySchema().load(dict(request.query))
    except ValidationError as exc:
        return error(400, "bad filters", errors=flatten_errors(exc.messages))
    rows = await _db(
        ctx,
        store.list_orders,
        status=query.get("status"),
        provider=query.get("provider"),
        limit=query["limit"],
        offset=query["offset"],
        producer=_scope(request),
    )
    return web.json_response(
        {"orders": [order_view(r) for r in rows], "limit": query["limit"], "offset": query["offset"]}
    )


async def show(request: web.Request) -> web.Response:
    try:
        return web.json_response(await _view(request.app["ctx"], request.match_info["order_id"], _scope(request)))
    except OrderNotFound as exc:
        return error(404, str(exc))


async def _act(request: web.Request, action: Callable, **kwargs) -> web.Response:
    """Run an action on an order this key may see (another producer's is not found), in one transaction."""
    ctx: Context = request.app["ctx"]
    order_id = request.match_info["order_id"]

    def act(conn):
        store.get_order(conn, order_id, producer=_scope(request))
        return action(conn, order_id, **kwargs)

    try:
        result = await _db(ctx, act)
        if action is operations.retry:
            await asyncio.to_thread(ctx.send_place, order_id, result, None)
        return web.json_response(await _view(ctx, order_id))
    except OrderNotFound as exc:
        return error(404, str(exc))
    except ActionRefused as exc:
        return error(409, str(exc))
    except ValueError:
        return error(404, f"no order with id {order_id}")


async def cancel(request: web.Request) -> web.Response:
    return await _act(request, operations.cancel, reason=f"canceled through the API ({request['key'].name})")


async def retry(request: web.Request) -> web.Response:
    """A new round of attempts. ``{"checked_by": "NAME"}`` (an operator's key only): NAME checked with the
    provider that it holds no such order, which a blind resend of an in-doubt order needs."""
    key: ApiKey = request["key"]
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return error(400, "send the retry's options as a JSON object, or nothing")
    checked_by = body.get("checked_by") if isinstance(body, dict) else None
    if checked_by is not None and (not isinstance(checked_by, str) or not 0 < len(checked_by) <= 100):
        return error(422, "checked_by is the name of whoever checked with the provider")
    if checked_by and key.role != "operator":
        return error(403, "only an operator's key may resend an in-doubt order blindly (checked_by)")
    who = f"{checked_by} (operator key {key.name})" if checked_by else None
    return await _act(request, operations.retry, reason=f"retried through the API ({key.name})", checked_by=who)


async def health(request: web.Request) -> web.Response:
    ctx: Context = request.app["ctx"]
    checks = {}
    for name, check in (("postgres", lambda: _ping_db(ctx)), ("broker", ctx.check_broker)):
        try:
            await asyncio.wait_for(asyncio.to_thread(check), timeout=5)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"down: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return web.json_response({"ok": ok, "version": __version__, **checks}, status=200 if ok else 503)


def _ping_db(ctx: Context) -> None:
    with ctx.db.connection() as conn:
        conn.execute("SELECT 1")


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus figures, computed at most once every ``METRICS_CACHE`` seconds however often it is asked."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    cached = request.app["metrics_cache"]
    async with cached["lock"]:
        if time.monotonic() - cached["at"] > METRICS_CACHE:
            cached["body"] = await asyncio.to_thread(generate_latest, request.app["metrics"])
            cached["at"] = time.monotonic()
    return web.Response(body=cached["body"], headers={"Content-Type": CONTENT_TYPE_LATEST})


async def docs(request: web.Request) -> web.Response:
    """The API's page: Swagger UI over /openapi.json."""
    return web.Response(text=DOCS_PAGE, content_type="text/html")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app["openapi"])


def _metrics_state(app: web.Application, ctx: Context) -> None:
    app["ctx"] = ctx
    app["metrics"] = registry(ctx.db, ctx.settings)
    app["metrics_cache"] = {"at": -METRICS_CACHE, "body": b"", "lock": asyncio.Lock()}


def make_app(ctx: Context) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=ctx.settings.api_max_body)
    _metrics_state(app, ctx)
    app["openapi"] = document()
    app.router.add_post("/orders", submit)
    app.router.add_get("/orders", list_orders)
    app.router.add_get("/orders/{order_id}", show)
    app.router.add_post("/orders/{order_id}/retry", retry)
    app.router.add_post("/orders/{order_id}/cancel", cancel)
    app.router.add_get("/healthz", health)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
    app.router.add_static(DOCS_STATIC, swagger_ui_path)
    app.router.add_get("/metrics", metrics)
    return app


def make_metrics_app(ctx: Context) -> web.Application:
    """``/metrics`` alone, without a key: for a listener of its own that only the scraper reaches."""
    app = web.Application(middlewares=[guard])
    _metrics_state(app, ctx)
    app["open"] = True
    app.router.add_get("/metrics", metrics)
    return app


def serve(host: str, port: int, ready: Callable[[], None] = lambda: None) -> None:
    """Serve the API with the process's settings, pool and Celery app; ``ready`` is called once it listens."""
    from orderrelay.config.settings import get_settings
    from orderrelay.foundation.vault import Vault
    from orderrelay.store.db import make_pool
    from orderrelay.tasks.orders import send_place
    from orderrelay.worker.app import app as celery_app

    settings = get_settings()
    if not settings.api_keys:
        raise SystemExit("orderrelay api needs ORDERRELAY_API_KEYS (`orderrelay keygen api-key NAME` makes one)")

    def check_broker() -> None:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)

    ctx = Context(
        settings,
        make_pool(settings.database_url, settings.db_pool_size),
        Vault(settings.fernet_keys),
        send_place,
        check_broker,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(_serve(ctx, host, port, ready))


async def _serve(ctx: Context, host: str, port: int, ready: Callable[[], None]) -> None:
    """The API on host:port, and /metrics on 127.0.0.1:ORDERRELAY_METRICS_PORT when that is set; until stopped."""
    sites = [(make_app(ctx), host, port)]
    if ctx.settings.metrics_port:
        sites.append((make_metrics_app(ctx), "127.0.0.1", ctx.settings.metrics_port))
    runners = []
    try:
        for app, where, number in sites:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, where, number).start()
        ready()
        stop = asyncio.Event()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signal_number, stop.set)
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
