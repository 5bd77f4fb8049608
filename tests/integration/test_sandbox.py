"""The Extend sandbox over real HTTP: auth, versioned Accept, validation in Extend's shape, key replay, lookup."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest

from orderrelay.sandbox.faults import Fault, parse_step
from orderrelay.sandbox.samples import extend_order as sample_order

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
    assert parse_step("drop_after_create") == Fault(drop=True, after_create=True)
    assert parse_step({"status": 502, "after_create": True, "gateway": True}) == Fault(
        status=502, after_create=True, gateway=True
    )
    assert parse_step({"after_create": True, "delay": 7}) == Fault(after_create=True, delay=7.0)
    assert parse_step({"status": 500, "stored": True}) == Fault(status=500, stored=True)
    with pytest.raises(ValueError, match="not a fault step"):
        parse_step("explode")


def adobe_call(sandbox, path, body=None, headers=None, method="POST"):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{sandbox.url}/adobe_vip{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture
def adobe_headers(sandbox):
    form = b"grant_type=client_credentials&client_id=sandbox-adobe-client&client_secret=sandbox-adobe-secret"
    req = urllib.request.Request(f"{sandbox.url}/adobe_vip/ims/token/v3", data=form, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        token = json.load(resp)["access_token"]
    return {"Authorization": f"Bearer {token}", "X-Api-Key": "sandbox-adobe-key"}


def test_adobe_needs_a_correlation_id_and_a_fresh_request_id(sandbox, adobe_headers):
    from orderrelay.sandbox.samples import adobe_order

    customer = sandbox.admin("adobe_vip/customers", {})["customerId"]
    offer = sandbox.admin("adobe_vip/offers", {})["offerId"]
    body = {k: v for k, v in adobe_order(customer, offer).items() if k != "customerId"}
    path = f"/v3/customers/{customer}/orders"
    assert adobe_call(sandbox, path, body, adobe_headers)[1]["code"] == "4119"
    first = adobe_call(sandbox, path, body, {**adobe_headers, "X-Correlation-Id": "c-1", "X-Request-Id": "r-1"})
    again = adobe_call(sandbox, path, body, {**adobe_headers, "X-Correlation-Id": "c-1", "X-Request-Id": "r-2"})
    reused = adobe_call(sandbox, path, body, {**adobe_headers, "X-Correlation-Id": "c-2", "X-Request-Id": "r-1"})
    assert first[0] == 201
    assert first[1]["status"] == "1002"
    assert again == first  # the first response, replayed
    assert (reused[0], reused[1]["code"]) == (400, "4120")
    assert sandbox.orders("adobe_vip")["count"] == 1


def test_adobe_auth_errors_use_adobes_codes(sandbox, adobe_headers):
    path = "/v3/customers/1/orders"
    assert adobe_call(sandbox, path, {}, {"X-Correlation-Id": "c"})[1]["code"] == "4117"
    assert adobe_call(sandbox, path, {}, {**adobe_headers, "Authorization": "Bearer nope"})[1]["code"] == "4116"
    assert adobe_call(sandbox, path, {}, {**adobe_headers, "X-Api-Key": "nope"})[1]["code"] == "4115"


def test_adobe_validation_codes(sandbox, adobe_headers):
    customer = sandbox.admin("adobe_vip/customers", {})["customerId"]
    path = f"/v3/customers/{customer}/orders"
    line = {"extLineItemNumber": 1, "offerId": "x", "quantity": 1, "currencyCode": "USD"}
    cases = {
        "1122": {"lineItems": [line]},
        "1121": {"orderType": "NEW", "lineItems": [line], "surprise": 1},
        "2121": {"orderType": "NEW", "lineItems": [line, line]},
        "2140": {"orderType": "NEW", "currencyCode": "USD", "lineItems": [line]},
        "2122": {"orderType": "NEW", "lineItems": [line]},
    }
    for number, (code, body) in enumerate(cases.items()):
        status, answer = adobe_call(sandbox, path, body, {**adobe_headers, "X-Correlation-Id": f"v-{number}"})
        assert (status, answer["code"]) == (400, code), answer


def test_chaiz_answers_in_its_wrapper(sandbox):
    req = urllib.request.Request(
        f"{sandbox.url}/chaiz/api/v2/Partners/CreateCompleteOrder",
        data=b"{}",
        method="POST",
        headers={"Authorization": "Bearer wrong"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    body = json.load(info.value)
    assert info.value.code == 401
    assert body["response"] is None
    assert body["errorResponse"]["errors"][0]["errorCode"] == "Unauthorized"
