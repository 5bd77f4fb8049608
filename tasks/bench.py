"""Tasks for ``orderrelay bench`` only: a no-op (Celery's own cost) and the naive design most people write
first (a new event loop, HTTP session, token and database connection per task, one call in flight).

Production workers do not load this module; the bench starts its workers with ``--include orderrelay.tasks.bench``."""

from __future__ import annotations

import asyncio
import json
import uuid

import psycopg
from psycopg.types.json import Jsonb

from orderrelay import providers
from orderrelay.config.settings import get_settings
from orderrelay.providers import http as provider_http
from orderrelay.worker.app import app


@app.task(name="bench.noop")
def noop() -> None:
    """Nothing: what Celery itself costs per message."""


class Unfenced:
    """The naive design takes no claim, so it has none to lose, and no mark to write, before it sends."""

    async def before(self) -> None:
        return None

    async def pace(self) -> None:
        return None

    async def connecting(self) -> None:
        return None

    async def connected(self) -> None:
        return None

    async def nothing_made(self) -> None:
        return None


@app.task(name="bench.naive_place", acks_late=True)
def naive_place(provider_id: str, order: dict, idempotency_key: str) -> str:
    """Validate, insert, call the provider with a fresh session and token, update: all inside one task."""
    settings = get_settings()
    provider = providers.get(provider_id)
    provider.OrderSchema().load(order)
    order_id, key = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "INSERT INTO orders (id, provider, status, provider_key, request, request_hash, idempotency_key) "
            "VALUES (%s, %s, 'placing', %s, %s, '', %s)",
            [order_id, provider_id, key, Jsonb(order), idempotency_key],
        )

    async def call():
        http = provider_http.Http(settings)
        try:
            sending = provider_http.Sending(str(key), provider.KEY, uncertain=False)
            return await provider_http.place(
                provider, http, settings.providers[provider_id], order, sending, fence=Unfenced()
            )
        finally:
            await http.close()

    placed = asyncio.run(call())
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "UPDATE orders SET status = 'placed', provider_ref = %s, placed_at = clock_timestamp(), "
            "response = %s WHERE id = %s",
            [placed.ref, Jsonb(json.loads(json.dumps(placed.response))), order_id],
        )
    return str(order_id)
