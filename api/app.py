"""The HTTP intake API. ``orderrelay api`` serves it.

``POST /orders`` validates with the worker's schemas and records the order (or the rejected job) before it
answers, so an accepted order is a row in Postgres, not only a message; then it sends the order's id to
its provider's queue. Everything else reads or acts on orders. Every answer is JSON; none is a 500 by design.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from marshmallow import ValidationError

from api.metrics import registry
from api.openapi import document
from config.settings import Settings
from orderrelay import operations, pipeline
from orderrelay.constants import Status
from orderrelay.errors import ActionRefused, OrderNotFound
from orderrelay.views import order_view
from schemas.api import ListQuerySchema
from schemas.fields import flatten_errors
from store import orders as store

log = logging.getLogger("orderrelay.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = ("/healthz", "/openapi.json", "/metrics")


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
    if request.path not in PUBLIC:
        offered = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not any(hmac.compare_digest(offered, key.encode()) for key in ctx.settings.api_keys):
            return error(401, "missing or wrong API key (Authorization: Bearer <key>)")
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


async def _view(ctx: Context, order_id) -> dict:
    return order_view(await _db(ctx, store.get_order, order_id))


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
        step = await asyncio.to_thread(pipeline.record_unreadable, ctx, raw, "nested too deeply to read")
        view = await _view(ctx, step.order_id)
        return error(422, "invalid job; the rejected order is recorded", order_id=view["id"], errors=view["errors"])
    except ValueError as exc:
        return error(400, f"malformed JSON: {exc}")
    header_key = request.headers.get("Idempotency-Key")
    if header_key and isinstance(job, dict):
        job.setdefault("idempotency_key", header_key)
    step = await asyncio.to_thread(pipeline.intake, ctx, job)
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
    )
    return web.json_response(
        {"orders": [order_view(r) for r in rows], "limit": query["limit"], "offset": query["offset"]}
    )


async def show(request: web.Request) -> web.Response:
    try:
        return web.json_response(await _view(request.app["ctx"], request.match_info["order_id"]))
    except OrderNotFound as exc:
        return error(404, str(exc))


def _action(action: Callable) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        ctx: Context = request.app["ctx"]
        order_id = request.match_info["order_id"]
        try:
            result = await _db(ctx, action, order_id)
            if action is operations.retry:
                await asyncio.to_thread(ctx.send_place, order_id, result, None)
            return web.json_response(await _view(ctx, order_id))
        except OrderNotFound as exc:
            return error(404, str(exc))
        except ActionRefused as exc:
            return error(409, str(exc))
        except ValueError:
            return error(404, f"no order with id {order_id}")

    return handle


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
    return web.json_response({"ok": ok, **checks}, status=200 if ok else 503)


def _ping_db(ctx: Context) -> None:
    with ctx.db.connection() as conn:
        conn.execute("SELECT 1")


async def metrics(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    body = await asyncio.to_thread(generate_latest, request.app["metrics"])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app["openapi"])


def make_app(ctx: Context) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=ctx.settings.api_max_body)
    app["ctx"] = ctx
    app["openapi"] = document()
    app["metrics"] = registry(ctx.db)
    app.router.add_post("/orders", submit)
    app.router.add_get("/orders", list_orders)
    app.router.add_get("/orders/{order_id}", show)
    app.router.add_post("/orders/{order_id}/retry", _action(operations.retry))
    app.router.add_post("/orders/{order_id}/cancel", _action(operations.cancel))
    app.router.add_get("/healthz", health)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)
    return app


def serve(host: str, port: int) -> None:
    """Serve the API with the process's settings, pool and Celery app."""
    from config.settings import get_settings
    from orderrelay.vault import Vault
    from store.db import make_pool
    from tasks.orders import send_place
    from worker.app import app as celery_app

    settings = get_settings()
    if not settings.api_keys:
        raise SystemExit("orderrelay api needs ORDERRELAY_API_KEYS (comma-separated keys of 16+ characters)")

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
    web.run_app(make_app(ctx), host=host, port=port, print=None, access_log=None)
