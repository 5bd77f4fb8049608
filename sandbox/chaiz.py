"""Chaiz's API, simulated (seed 000 and PROVIDERS.md), under ``/chaiz``.

- ``POST {ORDER_PATH}`` (Chaiz's real path is not public; the sandbox serves the configured default,
  ``/api/v2/Partners/CreateCompleteOrder``): ``Authorization: Bearer <partner token>`` (401 otherwise).
  Every answer is wrapped: ``{"response": ..., "errorResponse": {"errors": [...]}}``.
- Validation errors: 400, one error per field, ``errorNumber`` 4000 and ``errorCode`` ``InvalidField``
  (Chaiz's own numbers are not public beyond ``CantParseVIN``/4005; 4xxx mean validation).
  A ``partner`` that does not match the token: 4010 ``PartnerMismatch``. Unknown plan ids: 4020
  ``PlanNotFound``. Add-on ids not offered by the chosen plans: 4021 ``AddonNotFound``.
- No idempotency: every accepted call makes a new order (``orderId``, ``status: "Completed"``, one contract
  number per plan). The sandbox keeps only the last four digits of the card.
Admin: ``POST /_sandbox/chaiz/plans`` makes a plan id with two add-ons (``{"searchResultPlanId", "addons"}``).
"""

from __future__ import annotations

import itertools
import json

from aiohttp import web
from marshmallow import ValidationError

from orderrelay.sandbox.faults import ProviderState, scripted_create
from orderrelay.schemas.chaiz import OrderSchema
from orderrelay.schemas.fields import flatten_errors

TOKEN = "sandbox-chaiz-token"
PARTNER = "SANDBOX-PARTNER"
ORDER_PATH = "/api/v2/Partners/CreateCompleteOrder"
REF_FIELD = "orderId"  # the field of a record here that holds the reference orderrelay records


def natural(record: dict) -> str | None:
    """What makes an order this one, in a record here or in the body sent: two records with it are one order twice."""
    return record.get("externalId") or record.get("userDetails", {}).get("externalId")


CREDENTIALS = {"TOKEN": TOKEN, "ORDER_PATH": ORDER_PATH}


class State(ProviderState):
    """The simulated Chaiz: plan ids with their add-ons, and the orders made."""

    def reset(self) -> None:
        super().reset()
        self.plans: dict[int, list[int]] = {}
        self._ids = itertools.count(100_001)


def wrapped(response: dict | None = None, errors: list[dict] | None = None, status: int = 200) -> web.Response:
    return web.json_response({"response": response, "errorResponse": {"errors": errors or []}}, status=status)


def chaiz_error(message: str, field: str | None, code: str, number: int) -> dict:
    return {"errorMessage": message, "errorField": field, "errorCode": code, "errorNumber": number, "suggestions": []}


ORDERS = OrderSchema()  # made once: building a schema costs more than loading an order with it


def make_app(state: State) -> web.Application:
    app = web.Application()
    routes = web.RouteTableDef()

    @routes.post(ORDER_PATH)
    async def create(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return wrapped(errors=[chaiz_error("Invalid or missing token.", None, "Unauthorized", 401)], status=401)
        raw = await request.read()

        async def make() -> web.Response:
            try:
                order = ORDERS.load(json.loads(raw))
            except (ValueError, ValidationError) as exc:
                messages = flatten_errors(exc.messages) if isinstance(exc, ValidationError) else {None: [str(exc)]}
                errors = [chaiz_error(" ".join(msgs), path, "InvalidField", 4000) for path, msgs in messages.items()]
                return wrapped(errors=errors, status=400)
            if order.get("partner") not in (None, PARTNER):
                return wrapped(
                    errors=[chaiz_error("Partner does not match the token.", "partner", "PartnerMismatch", 4010)],
                    status=400,
                )
            unknown = [p for p in order["searchResultPlanIds"] if p not in state.plans]
            if unknown:
                return wrapped(
                    errors=[chaiz_error(f"Unknown plan ids {unknown}.", "searchResultPlanIds", "PlanNotFound", 4020)],
                    status=400,
                )
            offered = {a for p in order["searchResultPlanIds"] for a in state.plans[p]}
            stray = [a for a in order.get("selectedAddonIds") or [] if a not in offered]
            if stray:
                return wrapped(
                    errors=[
                        chaiz_error(
                            f"Add-ons {stray} are not offered by these plans.",
                            "selectedAddonIds",
                            "AddonNotFound",
                            4021,
                        )
                    ],
                    status=400,
                )
            created = {
                "orderId": next(state._ids),
                "status": "Completed",
                "contractNumbers": [f"VSC-{p}-{len(state.orders) + 1}" for p in order["searchResultPlanIds"]],
                "externalId": order["userDetails"].get("externalId"),
                "cardLast4": order["payment"]["accountNumber"][-4:],
            }
            state.orders.append(created)
            return wrapped(created, status=200)

        return await scripted_create(
            state,
            request,
            make,
            lambda status: {
                "response": None,
                "errorResponse": {"errors": [chaiz_error(f"scripted HTTP {status}", None, "SandboxFault", status)]},
            },
        )

    app.add_routes(routes)
    return app


def make_admin(state: State) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/_sandbox/chaiz/plans")
    async def plans(request: web.Request) -> web.Response:
        plan_id = next(state._ids)
        addons = [next(state._ids), next(state._ids)]
        state.plans[plan_id] = addons
        return web.json_response({"searchResultPlanId": plan_id, "addons": addons})

    return routes


def seed_examples(state: State) -> None:
    """What examples/chaiz.json names: plan 100001 with add-ons 100002 and 100003."""
    state.plans[100_001] = [100_002, 100_003]
