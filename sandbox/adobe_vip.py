"""Adobe VIP Marketplace, simulated (seed 002 and PROVIDERS.md), under ``/adobe_vip``.

- ``POST /ims/token/v3``: IMS client credentials (form-encoded); ``access_token``, ``expires_in`` seconds.
- ``POST /v3/customers/{customerId}/orders``: an ``X-Request-Id`` seen before on any create request, refused
  ones included, is refused: 400/4120 (Adobe: "the value should be reset for every single request ... a
  duplicate request ID may return an error"; PROVIDERS.md names 4120 for one reused under another correlation
  id; the sandbox refuses every reuse). Then ``Authorization: Bearer`` (missing: 403/4117, invalid or expired:
  401/4116), ``X-Api-Key`` (403/4115), ``X-Correlation-Id`` (missing: 400/4119). Every answer Adobe gives for a
  correlation id is replayed for it (Adobe keeps them 10 days; the sandbox until reset), failures included:
  its validation answers, and scripted faults unless marked ``gateway`` (``State.replays_failures``). Unknown
  customer: 404 (Adobe documents the status only; the sandbox's code is ``"404"``). Validation: 1121
  unexpected fields, 1122 missing fields, 2121 duplicate ``extLineItemNumber``, 2140 currency at both levels,
  1117 other invalid fields; an offer the sandbox does not know: 2122. Success: 201, status ``1002``. PREVIEW
  and PREVIEW_RENEWAL answer 200 with pricing and make no order (the sandbox's choice).
- ``GET /v3/customers/{customerId}/orders/{orderId}``: the order (unknown: 404/2115).
Admin: ``POST /_sandbox/adobe_vip/customers`` and ``/offers`` make ids (or take ``{"customerId"}`` /
``{"offerId"}``); ``POST /_sandbox/adobe_vip/orders/{orderId}/status`` with ``{"status": "1000"}`` moves an order;
``POST /_sandbox/adobe_vip/orders/{orderId}/unreadable`` makes its reads answer a 200 maintenance page.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime

from aiohttp import web
from marshmallow import ValidationError

from orderrelay.sandbox.faults import ProviderState, json_body, scripted_create, scripted_token
from orderrelay.schemas.adobe_vip import ROUTING_FIELDS, OrderSchema
from orderrelay.schemas.fields import flatten_errors

REF_FIELD = "orderId"  # the field of a record here that holds the reference orderrelay records


def natural(record: dict) -> str | None:
    """What makes an order this one, in a record here or in the body sent: two records with it are one order twice."""
    return record.get("externalReferenceId")


CREDENTIALS = {
    "CLIENT_ID": "sandbox-adobe-client",
    "CLIENT_SECRET": "sandbox-adobe-secret",
    "API_KEY": "sandbox-adobe-key",
}
PREVIEWS = ("PREVIEW", "PREVIEW_RENEWAL")


class State(ProviderState):
    """The simulated Adobe: customers, offers, orders, responses by correlation id, request ids seen."""

    replays_failures = True  # any answer given for a correlation id is replayed (seed 002, PROVIDERS.md)

    def reset(self) -> None:
        super().reset()
        self.customers: set[str] = set()
        self.offers: set[str] = set()
        self.by_correlation: dict[str, tuple[int, dict]] = {}
        self.request_ids: set[str] = set()
        self.unreadable: set[str] = set()  # orders whose read answers a maintenance page (200, HTML)
        self._ids = itertools.count(8_000_000_001)

    def forget_keys(self) -> None:
        self.by_correlation.clear()


def adobe_error(status: int, code: str, message: str, details: list | None = None) -> web.Response:
    return web.json_response({"code": code, "message": message, "additionalDetails": details or []}, status=status)


def _validation_code(errors: dict[str, list[str]]) -> str:
    text = " ".join(" ".join(m) for m in errors.values())
    if "Duplicate extLineItemNumber" in text:
        return "2121"
    if any(path == "currencyCode" for path in errors):
        return "2140"
    if "Unknown field." in text:
        return "1121"
    if "Missing data for required field." in text:
        return "1122"
    return "1117"


ORDERS = OrderSchema()  # made once: building a schema costs more than loading an order with it


def make_app(state: State) -> web.Application:
    app = web.Application()
    routes = web.RouteTableDef()

    @routes.post("/ims/token/v3")
    async def token(request: web.Request) -> web.Response:
        scripted = await scripted_token(state, request)
        if scripted is not None:
            return scripted
        form = await request.post()
        if (form.get("client_id"), form.get("client_secret")) != (
            CREDENTIALS["CLIENT_ID"],
            CREDENTIALS["CLIENT_SECRET"],
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        value, ttl = state.issue_token()
        return web.json_response({"access_token": value, "token_type": "bearer", "expires_in": int(ttl)})

    def refused(request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return adobe_error(403, "4117", "Missing Authorization token.")
        if not state.token_ok(auth.removeprefix("Bearer ")):
            return adobe_error(401, "4116", "Invalid Authorization token.")
        if request.headers.get("X-Api-Key") != CREDENTIALS["API_KEY"]:
            return adobe_error(403, "4115", "Invalid API Key.")
        return None

    @routes.post("/v3/customers/{customer_id}/orders")
    async def create(request: web.Request) -> web.Response:
        request_id = request.headers.get("X-Request-Id")
        if request_id in state.request_ids:
            return adobe_error(400, "4120", "X-Request-Id was already used; send a new one with every request.")
        if request_id:
            state.request_ids.add(request_id)
        answer = refused(request)
        if answer:
            return answer
        correlation = request.headers.get("X-Correlation-Id")
        if not correlation:
            return adobe_error(400, "4119", "X-Correlation-Id is required.")
        customer_id = request.match_info["customer_id"]
        raw = await request.read()

        def remember(response: web.Response) -> web.Response:
            state.by_correlation[correlation] = (response.status, json.loads(response.body))
            return response

        def replay() -> web.Response | None:
            if correlation not in state.by_correlation:
                return None
            status, body = state.by_correlation[correlation]
            return web.json_response(body, status=status)

        async def make() -> web.Response:
            if customer_id not in state.customers:
                return remember(adobe_error(404, "404", "Invalid Customer ID."))
            try:
                body = json.loads(raw)
                order = ORDERS.load({**body, "customerId": customer_id} if isinstance(body, dict) else body)
                if isinstance(body, dict) and set(body) & set(ROUTING_FIELDS):
                    raise ValidationError({"customerId": ["Unknown field."]})
            except (ValueError, ValidationError) as exc:
                errors = flatten_errors(exc.messages) if isinstance(exc, ValidationError) else {"_schema": [str(exc)]}
                details = [{"field": path, "message": " ".join(msgs)} for path, msgs in errors.items()]
                return remember(adobe_error(400, _validation_code(errors), "Invalid order.", details))
            bad_offers = [line["offerId"] for line in order["lineItems"] if line["offerId"] not in state.offers]
            if bad_offers:
                return remember(adobe_error(400, "2122", f"Invalid offer ids {bad_offers}."))
            preview = order["orderType"] in PREVIEWS
            created = {
                **{k: v for k, v in order.items() if k not in ROUTING_FIELDS},
                "orderId": None if preview else str(next(state._ids)),
                "customerId": customer_id,
                "creationDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "status": "1002",
                "source": "API",
                "lineItems": [{**line, "status": "1002", "subscriptionId": ""} for line in order["lineItems"]],
            }
            if preview:
                return remember(web.json_response(created, status=200))
            created["links"] = {
                "self": {
                    "uri": f"/v3/customers/{customer_id}/orders/{created['orderId']}",
                    "method": "GET",
                    "headers": [],
                }
            }
            state.orders.append(created)
            return remember(web.json_response(created, status=201))

        return await scripted_create(
            state,
            request,
            make,
            lambda status: {"code": "1124" if status == 500 else str(status), "message": f"scripted HTTP {status}"},
            replay=replay,
            store=remember,
        )

    @routes.get("/v3/customers/{customer_id}/orders/{order_id}")
    async def read(request: web.Request) -> web.Response:
        state.calls.append(("read", time.time()))
        answer = refused(request)
        if answer:
            return answer
        for order in state.orders:
            if (
                order["orderId"] == request.match_info["order_id"]
                and order["customerId"] == request.match_info["customer_id"]
            ):
                if order["orderId"] in state.unreadable:
                    return web.Response(text="<html><body>Down for maintenance</body></html>", content_type="text/html")
                return web.json_response(order)
        return adobe_error(404, "2115", "Order not found.")

    app.add_routes(routes)
    return app


def make_admin(state: State) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/_sandbox/adobe_vip/customers")
    async def customers(request: web.Request) -> web.Response:
        customer_id = (await json_body(request)).get("customerId") or str(next(state._ids))
        state.customers.add(customer_id)
        return web.json_response({"customerId": customer_id})

    @routes.post("/_sandbox/adobe_vip/offers")
    async def offers(request: web.Request) -> web.Response:
        offer_id = (await json_body(request)).get("offerId") or f"6500{next(state._ids)}CA01A12"
        state.offers.add(offer_id)
        return web.json_response({"offerId": offer_id})

    @routes.post("/_sandbox/adobe_vip/orders/{order_id}/unreadable")
    async def unreadable(request: web.Request) -> web.Response:
        """Reads of this order answer 200 with a maintenance page (``{"unreadable": false}`` ends that)."""
        order_id = request.match_info["order_id"]
        if (await json_body(request)).get("unreadable", True):
            state.unreadable.add(order_id)
        else:
            state.unreadable.discard(order_id)
        return web.json_response({"orderId": order_id})

    @routes.post("/_sandbox/adobe_vip/orders/{order_id}/status")
    async def move(request: web.Request) -> web.Response:
        status = (await json_body(request))["status"]
        for order in state.orders:
            if order["orderId"] == request.match_info["order_id"]:
                order["status"] = status
                for line in order["lineItems"]:
                    line["status"] = status
                return web.json_response(order)
        raise web.HTTPNotFound(text="no such order")

    return routes


def seed_examples(state: State) -> None:
    """What examples/adobe_vip.json names: customer 8000000001 and offer 65000000001CA01A12."""
    state.customers.add("8000000001")
    state.offers.add("65000000001CA01A12")
