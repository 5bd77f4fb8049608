"""The API's OpenAPI 3 document, generated with apispec from the same marshmallow schemas the worker uses."""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import validate

from orderrelay import __version__, providers
from orderrelay.api import schemas as views
from orderrelay.schemas.fields import Chain, Pattern

JSON = "application/json"


def _name(schema) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    module = cls.__module__.split(".")[-1]
    prefix = "" if module == "api" else "".join(part.title() for part in module.split("_"))
    return prefix + cls.__name__.removesuffix("Schema")


def _error(description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": "Error"}}}


def chained(self, field, **kwargs) -> dict:
    """The length, pattern and e-mail format of the checks in a field's ``Chain`` (which apispec does not open)."""
    found: dict = {}
    for chain in (v for v in field.validators if isinstance(v, Chain)):
        for check in chain.validators:
            if isinstance(check, validate.Length):
                low, high = (check.equal, check.equal) if check.equal is not None else (check.min, check.max)
                found.update({k: v for k, v in (("minLength", low), ("maxLength", high)) if v is not None})
            elif isinstance(check, Pattern):
                found["pattern"] = check.documented
            elif isinstance(check, validate.Email):
                found["format"] = "email"
    return found


def document() -> dict:
    plugin = MarshmallowPlugin(schema_name_resolver=_name)
    spec = APISpec(
        title="orderrelay intake API",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[plugin],
        info={"description": "Submit orders for the providers orderrelay places them with, and follow them."},
    )
    plugin.converter.add_attribute_function(chained)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for schema in (views.OrderSchema, views.OrderListSchema, views.ErrorSchema, views.HealthSchema):
        spec.components.schema(_name(schema), schema=schema)
    bodies = []
    for _, provider in sorted(providers.REGISTRY.items()):
        spec.components.schema(_name(provider.OrderSchema), schema=provider.OrderSchema)
        bodies.append({"$ref": f"#/components/schemas/{_name(provider.OrderSchema)}"})
    spec.components.schema(
        "Job",
        {
            "type": "object",
            "required": ["provider", "order"],
            "additionalProperties": False,
            "properties": {
                "provider": {"type": "string", "enum": sorted(providers.REGISTRY)},
                "order": {"description": "The provider's create-order body (see its schema).", "oneOf": bodies},
                "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200, "nullable": True},
                "not_before": {"type": "string", "format": "date-time", "nullable": True},
            },
        },
    )
    secured = [{"bearer": []}]
    order_id = {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    order_ok = {"content": {JSON: {"schema": "Order"}}}
    auth = {"401": _error("No or a wrong API key."), "403": _error("This key's role may not do this.")}
    spec.path(
        path="/orders",
        operations={
            "post": {
                "summary": "Submit an order",
                "security": secured,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    }
                ],
                "requestBody": {"required": True, "content": {JSON: {"schema": "Job"}}},
                "responses": {
                    "202": {
                        "description": "Taken in; it will be placed.",
                        **order_ok,
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "200": {"description": "The same key and body came before: that order.", **order_ok},
                    "400": _error("Malformed JSON, or the Idempotency-Key header and the body's key differ."),
                    **auth,
                    "409": _error("The idempotency key was used with another body."),
                    "413": _error("The body is larger than the configured limit."),
                    "415": _error("The body is not application/json."),
                    "422": _error("The job is invalid; the rejected order is recorded."),
                },
            },
            "get": {
                "summary": "List orders, newest first",
                "security": secured,
                "parameters": [{"in": "query", "schema": views.ListQuerySchema}],
                "responses": {
                    "200": {"description": "Orders", "content": {JSON: {"schema": "OrderList"}}},
                    "400": _error("Bad filters."),
                    **auth,
                },
            },
        },
    )
    spec.path(
        path="/orders/{order_id}",
        operations={
            "get": {
                "summary": "One order with its attempts and events",
                "security": secured,
                "parameters": [order_id],
                "responses": {
                    "200": {"description": "The order", **order_ok},
                    **auth,
                    "404": _error("No such order (or one of another producer's)."),
                },
            }
        },
    )
    checked = {
        "type": "object",
        "properties": {
            "checked_by": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "description": "An operator's key only: who checked with the provider that it holds no such "
                "order. A blind resend of an in-doubt order of a provider with no lookup and no key needs it.",
            }
        },
    }
    for action, summary in (("retry", "Retry a failed or in-doubt order"), ("cancel", "Cancel an order")):
        operation = {
            "summary": summary,
            "security": secured,
            "parameters": [order_id],
            "responses": {
                "200": {"description": "Done", **order_ok},
                "400": _error("The body is not a JSON object."),
                **auth,
                "404": _error("No such order (or one of another producer's)."),
                "409": _error("Its status does not allow it."),
                "422": _error("checked_by is not a name."),
            },
        }
        if action == "retry":
            operation["requestBody"] = {"required": False, "content": {JSON: {"schema": checked}}}
        spec.path(path=f"/orders/{{order_id}}/{action}", operations={"post": operation})
    spec.path(
        path="/metrics",
        operations={
            "get": {
                "summary": "Prometheus metrics, computed from Postgres (an operator's or a metrics key)",
                "security": secured,
                "responses": {
                    "200": {
                        "description": "Metrics in the Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **auth,
                },
            }
        },
    )
    spec.path(
        path="/healthz",
        operations={
            "get": {
                "summary": "Postgres and the broker answer",
                "responses": {
                    "200": {"description": "Healthy", "content": {JSON: {"schema": "Health"}}},
                    "503": {"description": "Unhealthy", "content": {JSON: {"schema": "Health"}}},
                },
            }
        },
    )
    return spec.to_dict()
