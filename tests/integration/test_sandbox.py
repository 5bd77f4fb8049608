"""The Extend sandbox over real HTTP: auth, versioned Accept, validation in Extend's shape, key replay, lookup."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest

from sandbox.faults import Fault, parse_step
from sandbox.samples import extend_order as sample_order

pytestmark = pytest.mark.integration
ACCEPT = "application/json; version=2022-02-01"


def call(sandbox, method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{sandbox.url}/extend{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.load(exc)


@pytest.fixture
def token(sandbox):
    status, _, body = call(
        sandbox,
        "POST",
        "/auth/oauth/token",
        {"grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret"},
    )
    assert status == 200
    return body["access_token"]


def headers(token, key=None):
    return {"X-Extend-Access-Token": token, "Accept": ACCEPT, "X-Idempotency-Key": key or str(uuid.uuid4())}


def test_wrong_credentials_get_no_token(sandbox):
    status, _, body = call(sandbox, "POST", "/auth/oauth/token", {"client_id": "x", "client_secret": "y"})
    assert (status, body["code"]) == (401, "Unauthorized")


def test_an_order_without_a_valid_token_is_refused(sandbox):
    status, _, _ = call(sandbox, "POST", "/orders", sample_order("s"), headers("forged"))
    assert status == 401


def test_the_api_version_must_be_named(sandbox, token):
    status, _, _ = call(sandbox, "POST", "/orders", sample_order("s"), {**headers(token), "Accept": "application/json"})
    assert status == 406


def test_the_idempotency_key_must_be_a_uuid(sandbox, token):
    status, _, body = call(sandbox, "POST", "/orders", sample_order("s"), headers(token, key="not-a-uuid"))
    assert (status, body["code"]) == (400, "InvalidIdempotencyKey")


def test_validation_errors_come_in_extends_shape_and_are_not_stored(sandbox, token):
    key = str(uuid.uuid4())
    bad = sample_order("s", total=-1)
    status, _, body = call(sandbox, "POST", "/orders", bad, headers(token, key))
    assert (status, body["code"]) == (400, "ValidationError")
    assert "total" in body["errors"]
    status, _, _ = call(sandbox, "POST", "/orders", sample_order("s"), headers(token, key))
    assert status == 201  # the failed validation was not stored under the key


def test_the_first_result_is_replayed_and_another_body_is_a_conflict(sandbox, token):
    key = str(uuid.uuid4())
    order = sample_order("s-replay")
    first = call(sandbox, "POST", "/orders", order, headers(token, key))
    again = call(sandbox, "POST", "/orders", order, headers(token, key))
    assert first[0] == 201
    assert again[0] == 201
    assert again[2]["id"] == first[2]["id"]
    assert again[1]["Idempotent-Replayed"] == "true"
    conflict = call(sandbox, "POST", "/orders", sample_order("s-other"), headers(token, key))
    assert conflict[0] == 409
    assert sandbox.orders()["count"] == 1


def test_search_finds_orders_by_transaction_id(sandbox, token):
    call(sandbox, "POST", "/orders", sample_order("s-find"), headers(token))
    status, _, body = call(sandbox, "GET", "/orders/search?transactionId=s-find", headers=headers(token))
    assert status == 200
    assert [o["transactionId"] for o in body["orders"]] == ["s-find"]
    assert call(sandbox, "GET", "/orders/search?transactionId=nope", headers=headers(token))[2] == {"orders": []}


def test_line_item_kinds_and_statuses(sandbox, token):
    order = sample_order("s-kinds", transactionDelay=0.5)
    order["lineItems"].append({"lineItemTransactionId": "ship", "quoteId": "q", "shipmentInfo": {"carrier": "ups"}})
    _, _, body = call(sandbox, "POST", "/orders", order, headers(token))
    assert body["status"] == "pending"
    assert [line["type"] for line in body["lineItems"]] == ["contract", "lead", "shipping_protection"]


def test_scripted_latency_and_statuses(sandbox, token):
    sandbox.script(latency_ms=0, script=[{"status": 429, "retry_after": 3}, 502])
    first = call(sandbox, "POST", "/orders", sample_order("s-f"), headers(token))
    second = call(sandbox, "POST", "/orders", sample_order("s-f"), headers(token))
    third = call(sandbox, "POST", "/orders", sample_order("s-f"), headers(token))
    assert (first[0], first[1]["Retry-After"]) == (429, "3")
    assert second[0] == 502
    assert third[0] == 201


def test_fault_steps_parse():
    assert parse_step(200) == Fault()
    assert parse_step("drop_after_create") == Fault(drop_after_create=True)
    assert parse_step({"status": 500, "stored": True}) == Fault(status=500, stored=True)
    with pytest.raises(ValueError, match="not a fault step"):
        parse_step("explode")
