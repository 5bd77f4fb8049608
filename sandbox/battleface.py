"""battleface's partner API, simulated (seed 003 and PROVIDERS.md), under ``/battleface``.

- ``POST /api/partner/auth/token``: the sandbox's choice for how a partner gets its JWT (not public): client
  credentials in JSON; answers ``access_token`` and ``expires_in``.
- ``POST /api/partner/orders/condensed/dynamic``: ``Authorization: Bearer`` (401 ``{"error": ...}``
  otherwise). Invalid data: 406 with every field's message. An unknown quote: 406. The product is the one
  active product of ``programid`` in ``hostcountrystate`` (narrowed by ``products.ids``/``uuids``): none or
  several match: 406 saying which. A ``premium`` that is not the quote's: 400 (premium mismatch).
  Success: 201 ``{"data": {...}}`` shaped like the seed's, ``status`` ``Pending``, one item with a
  ``policy_number``. No idempotency: each accepted call makes a new order.
Admin: ``POST /_sandbox/battleface/quotes`` (``{"premium", "currency_id", "product"}``; ``"product": true`` also
makes the sample orders' product, program 10 in OH, unless one is active) and ``/products``
(``{"program_id", "state", "active"}``) make ids.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime

from aiohttp import web
from marshmallow import ValidationError

from orderrelay.sandbox.faults import ProviderState, client_credentials_token, json_body, scripted_create
from orderrelay.schemas.battleface import OrderSchema
from orderrelay.schemas.fields import flatten_errors

REF_FIELD = "order_number"  # the field of a record here that holds the reference orderrelay records


def natural(record: dict) -> str | None:
    """What makes an order this one, in a record here or in the body sent: two records with it are one order twice."""
    return record["quote_id"]


CREDENTIALS = {"CLIENT_ID": "sandbox-battleface-client", "CLIENT_SECRET": "sandbox-battleface-secret"}


class State(ProviderState):
    """The simulated battleface: quotes, products per program and state, and orders."""

    def reset(self) -> None:
        super().reset()
        self.quotes: dict[str, dict] = {}
        self.products: list[dict] = []
        self._ids = itertools.count(1001)


def fail(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


ORDERS = OrderSchema()  # made once: building a schema costs more than loading an order with it


def make_app(state: State) -> web.Application:
    app = web.Application()
    routes = web.RouteTableDef()

    @routes.post("/api/partner/auth/token")
    async def token(request: web.Request) -> web.Response:
        return await client_credentials_token(request, state, CREDENTIALS, fail)

    @routes.post("/api/partner/orders/condensed/dynamic")
    async def create(request: web.Request) -> web.Response:
        if not state.token_ok(request.headers.get("Authorization", "").removeprefix("Bearer ")):
            return fail(401, "Unauthenticated.")
        raw = await request.read()

        async def make() -> web.Response:
            try:
                order = ORDERS.load(json.loads(raw))
            except (ValueError, ValidationError) as exc:
                errors = flatten_errors(exc.messages) if isinstance(exc, ValidationError) else {"_schema": [str(exc)]}
                return fail(406, "; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in errors.items()))
            quote = state.quotes.get(order["quote_id"])
            if quote is None:
                return fail(406, f"Quote {order['quote_id']} not found.")
            products = [
                p
                for p in state.products
                if p["active"] and p["program_id"] == order["programid"] and p["state"] == order["hostcountrystate"]
            ]
            wanted = order.get("products", {})
            if "ids" in wanted:
                products = [p for p in products if p["id"] in wanted["ids"]]
            if "uuids" in wanted:
                products = [p for p in products if uuid.UUID(p["uuid"]) in wanted["uuids"]]
            if len(products) != 1:
                return fail(
                    406,
                    f"{len(products)} active products match program {order['programid']} in "
                    f"{order['hostcountrystate']}{' and the product filter' if wanted else ''}; need exactly 1.",
                )
            if "premium" in order and order["premium"] != quote["premium"]:
                return fail(400, f"Premium mismatch: the quote's premium is {quote['premium']}.")
            product = products[0]
            number = next(state._ids)
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            order_number = f"1-{number:07X}-{uuid.uuid4().hex[:12].upper()}"
            created = {
                "schema_version": 1,
                "quote_id": order["quote_id"],
                "order_number": order_number,
                "status": "Pending",
                "premium": quote["premium"],
                "total": quote["premium"],
                "currency_id": order.get("currency_id", quote["currency_id"]),
                "ordered_at": now,
                "items": [
                    {
                        "id": str(uuid.uuid4()),
                        "product_id": product["id"],
                        "program_id": order["programid"],
                        "product_uuid": product["uuid"],
                        "policy_number": f"{order_number}-1",
                        "start_at": str(order.get("start_at", "")) or None,
                        "end_at": str(order.get("end_at", "")) or None,
                    }
                ],
                "applicant": json.loads(json.dumps(order.get("applicant", {}), default=str)),
            }
            state.orders.append(created)
            return web.json_response({"data": created}, status=201)

        return await scripted_create(state, request, make, lambda status: {"error": f"scripted HTTP {status}"})

    app.add_routes(routes)
    return app


def make_admin(state: State) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/_sandbox/battleface/quotes")
    async def quotes(request: web.Request) -> web.Response:
        body = await json_body(request)
        if body.get("product") and not any(
            p["active"] and (p["program_id"], p["state"]) == (10, "OH") for p in state.products
        ):
            # the sample orders' program and state: one active product for them, made with the first quote
            state.products.append(
                {"id": next(state._ids), "uuid": str(uuid.uuid4()), "program_id": 10, "state": "OH", "active": True}
            )
        quote_id = uuid.uuid4().hex[:24]
        state.quotes[quote_id] = {"premium": body.get("premium", 20), "currency_id": body.get("currency_id", "USD")}
        return web.json_response({"quote_id": quote_id, **state.quotes[quote_id]})

    @routes.post("/_sandbox/battleface/products")
    async def products(request: web.Request) -> web.Response:
        body = await json_body(request)
        product = {
            "id": next(state._ids),
            "uuid": str(uuid.uuid4()),
            "program_id": int(body.get("program_id", 10)),
            "state": body.get("state", "OH"),
            "active": bool(body.get("active", True)),
        }
        state.products.append(product)
        return web.json_response(product)

    return routes


def seed_examples(state: State) -> None:
    """What examples/battleface.json names: quote 6388da3cf57124e1a8016b12 and an active product for it."""
    state.quotes["6388da3cf57124e1a8016b12"] = {"premium": 20, "currency_id": "USD"}
    product = {"id": next(state._ids), "uuid": str(uuid.uuid4()), "program_id": 10, "state": "OH", "active": True}
    state.products.append(product)
