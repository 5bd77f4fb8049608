"""Webroot Unity's shop API, simulated (seed 004 and PROVIDERS.md), under ``/webroot``.

- ``POST /auth/token``: Basic client credentials; form ``grant_type=password`` (username, password) or
  ``grant_type=refresh_token``. Access tokens live 5 minutes of sandbox time (``/_sandbox/webroot/tokens``
  ``{"ttl": ...}`` shortens it), refresh tokens 14 days.
- ``POST /service/api/ecom/shop/orders``: ``Authorization: Bearer`` (401 otherwise). The body may be JSON or
  XML (the seed shows both); the answer is XML when ``Accept`` asks for XML, else JSON. A cart converts once:
  converting it again answers 400 ``CartAlreadyConverted``; an unknown cart 404 ``CartNotFound``.
  Invalid bodies: 400 ``InvalidRequest`` with ``ModelState``.
- ``GET /service/api/ecom/shop/carts/{code}``: ``CartOrderStatusId`` 1 (open) or 2 (converted, with the
  ``Order``). Webroot does not publish these values; they are the sandbox's choice, shared with the client.
Error bodies are not public; the sandbox answers ASP.NET-style ``{"Message", "ErrorCode"}``.
Admin: ``POST /_sandbox/webroot/carts`` makes an open cart (``{"VendorOrderCode"}``).
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, SubElement, tostring

import defusedxml.ElementTree as SafeXML
from aiohttp import web
from marshmallow import ValidationError

from orderrelay.sandbox.faults import ProviderState, scripted_create, scripted_lookup, scripted_token
from orderrelay.schemas.fields import flatten_errors
from orderrelay.schemas.webroot import OrderSchema

REF_FIELD = "VendorOrderCode"  # the field of a record here that holds the reference orderrelay records


def natural(record: dict) -> str | None:
    """What makes an order this one, in a record here or in the body sent: two records with it are one order twice."""
    return record["VendorOrderCode"]


CREDENTIALS = {
    "CLIENT_ID": "sandbox-webroot-client",
    "CLIENT_SECRET": "sandbox-webroot-secret",
    "USERNAME": "sandbox-user",
    "PASSWORD": "sandbox-password",
}
NS = "http://schemas.datacontract.org/2004/07/Webroot.UnityAPI.ServiceExtension.ECom.Models"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
OPEN, CONVERTED = 1, 2


class State(ProviderState):
    """The simulated Webroot: carts, refresh tokens, and how many grants of each kind were made."""

    def reset(self) -> None:
        super().reset()
        self.token_ttl = 300.0
        self.carts: dict[str, dict] = {}
        self.refresh_tokens: dict[str, float] = {}
        self.grants = {"password": 0, "refresh_token": 0}
        self._ids = itertools.count(46_543_057)


def fail(status: int, code: str, message: str, **extra) -> web.Response:
    return web.json_response({"Message": message, "ErrorCode": code, **extra}, status=status)


def from_xml(raw: bytes) -> dict:
    root = SafeXML.fromstring(raw)
    return {child.tag.split("}")[-1]: child.text for child in root}


def to_xml(name: str, value) -> bytes:
    root = Element(name, {"xmlns": NS, "xmlns:i": XSI})

    def fill(node: Element, item) -> None:
        if item is None:
            node.set("i:nil", "true")
        elif isinstance(item, dict):
            for key in sorted(item):
                fill(SubElement(node, key), item[key])
        elif isinstance(item, list):
            for entry in item:
                fill(SubElement(node, f"{name}.{name}_OrderItem"), entry)
        else:
            node.text = str(item)

    fill(root, value)
    return tostring(root, encoding="utf-8")


def answer(
    request: web.Request, body: dict, status: int, name: str = "CreateOrderResponseServiceModel"
) -> web.Response:
    if "xml" in request.headers.get("Accept", ""):
        return web.Response(body=to_xml(name, body), status=status, content_type="application/xml")
    return web.json_response(body, status=status)


ORDERS = OrderSchema()  # made once: building a schema costs more than loading an order with it


def make_app(state: State) -> web.Application:
    app = web.Application()
    routes = web.RouteTableDef()

    @routes.post("/auth/token")
    async def token(request: web.Request) -> web.Response:
        scripted = await scripted_token(state, request)
        if scripted is not None:
            return scripted
        pair = f"{CREDENTIALS['CLIENT_ID']}:{CREDENTIALS['CLIENT_SECRET']}".encode()
        if request.headers.get("Authorization") != f"Basic {base64.b64encode(pair).decode()}":
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        grant = form.get("grant_type")
        if grant == "password":
            if (form.get("username"), form.get("password")) != (CREDENTIALS["USERNAME"], CREDENTIALS["PASSWORD"]):
                return web.json_response({"error": "invalid_grant"}, status=400)
        elif grant == "refresh_token":
            if state.refresh_tokens.pop(str(form.get("refresh_token")), 0) < time.monotonic():
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "refresh token expired"}, status=400
                )
        else:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        state.grants[grant] += 1
        value, ttl = state.issue_token()
        refresh = secrets.token_urlsafe(24)
        state.refresh_tokens[refresh] = time.monotonic() + 14 * 86400
        return web.json_response(
            {"access_token": value, "token_type": "bearer", "expires_in": ttl, "refresh_token": refresh}
        )

    def authorized(request: web.Request) -> bool:
        return state.token_ok(request.headers.get("Authorization", "").removeprefix("Bearer "))

    @routes.post("/service/api/ecom/shop/orders")
    async def create(request: web.Request) -> web.Response:
        if not authorized(request):
            return fail(401, "Unauthorized", "Authorization has been denied for this request.")
        raw = await request.read()

        async def make() -> web.Response:
            try:
                body = from_xml(raw) if "xml" in (request.content_type or "") else json.loads(raw)
                order = ORDERS.load(body)
            except (ValueError, SafeXML.ParseError, ValidationError) as exc:
                errors = flatten_errors(exc.messages) if isinstance(exc, ValidationError) else {"body": [str(exc)]}
                return fail(400, "InvalidRequest", "The request is invalid.", ModelState=errors)
            cart = state.carts.get(order["VendorOrderCode"])
            if cart is None:
                return fail(404, "CartNotFound", f"No cart {order['VendorOrderCode']}.")
            if cart["CartOrderStatusId"] == CONVERTED:
                return fail(400, "CartAlreadyConverted", f"Cart {order['VendorOrderCode']} was already converted.")
            created = {
                "VendorOrderDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "Locale": "en_US",
                "TypeOfOrder": "MSP",
                "VendorOrderCode": order["VendorOrderCode"],
                "OrderHeaderToken": str(uuid.uuid4()).upper(),
                "CurrencyCode": "USD",
                "PaymentHeader": {"PaymentStatusName": "subscribed", "PaymentMethodName": order["PaymentMethod"]},
                "Items": [
                    {
                        "LicenseCategoryName": "WIFI",
                        "Seats": 3,
                        "Quantity": 1,
                        "UnitPrice": 39.99,
                        "KeyCode": secrets.token_hex(10).upper(),
                        "ProductDescription": "Webroot WiFi Security 3 Device 1 Year Subscription",
                    }
                ],
                "Customers": {"Billing": {"CustomerId": next(state._ids), "CustomerEmail": "jdoe@example.com"}},
                "PurchaseOrder": order["PurchaseOrder"],
            }
            cart.update(CartOrderStatusId=CONVERTED, Order=created)
            state.orders.append(created)
            return answer(request, created, 201)

        return await scripted_create(
            state, request, make, lambda status: {"Message": f"scripted HTTP {status}", "ErrorCode": "SandboxFault"}
        )

    @routes.get("/service/api/ecom/shop/carts/{code}")
    async def cart(request: web.Request) -> web.Response:
        if not authorized(request):
            return fail(401, "Unauthorized", "Authorization has been denied for this request.")
        code = request.match_info["code"]
        scripted = scripted_lookup(
            state, request, lambda: answer(request, {"VendorOrderCode": code, "CartOrderStatusId": OPEN}, 200)
        )
        if scripted:
            return scripted
        found = state.carts.get(code)
        if found is None:
            return fail(404, "CartNotFound", f"No cart {request.match_info['code']}.")
        return answer(request, found, 200, name="CartServiceModel")

    app.add_routes(routes)
    return app


def make_admin(state: State) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/_sandbox/webroot/carts")
    async def carts(request: web.Request) -> web.Response:
        code = f"MSP{next(state._ids):010d}"
        state.carts[code] = {"VendorOrderCode": code, "CartOrderStatusId": OPEN}
        return web.json_response({"VendorOrderCode": code})

    @routes.get("/_sandbox/webroot/grants")
    async def grants(request: web.Request) -> web.Response:
        return web.json_response(state.grants)

    return routes


def seed_examples(state: State) -> None:
    """What examples/webroot.json names: the open cart MSP0046543057 (converted once, as any cart)."""
    state.carts["MSP0046543057"] = {"VendorOrderCode": "MSP0046543057", "CartOrderStatusId": OPEN}
