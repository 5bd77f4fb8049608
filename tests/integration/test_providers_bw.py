"""battleface and Webroot through the pipeline, against a real PostgreSQL and the sandbox over real HTTP."""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest

from orderrelay.core import pipeline
from orderrelay.foundation.constants import Status
from orderrelay.sandbox.samples import battleface_order, webroot_order
from orderrelay.store import orders as store

pytestmark = pytest.mark.integration


@pytest.fixture
def quote(sandbox) -> str:
    sandbox.admin("battleface/products", {"program_id": 10, "state": "OH"})
    return sandbox.admin("battleface/quotes", {"premium": 20})["quote_id"]


@pytest.fixture
def cart(sandbox) -> str:
    return sandbox.admin("webroot/carts", {})["VendorOrderCode"]


def submit(runtime, provider: str, order: dict):
    return pipeline.intake(runtime, {"provider": provider, "order": order}, message_id=str(uuid.uuid4()))


def settle(runtime, order_id, rounds: int = 10):
    for _ in range(rounds):
        step = pipeline.place(runtime, order_id)
        if step.status not in (Status.RETRYING, "unclaimed"):
            return step.status
        time.sleep(0.6)
    pytest.fail("the order did not settle")


def test_battleface_order_from_a_quote_is_placed_with_its_policy_number(runtime, db, sandbox, quote):
    step = submit(runtime, "battleface", battleface_order(quote, premium=20))
    assert settle(runtime, step.order_id) == Status.PLACED
    placed = store.get_order(db, step.order_id)
    made = sandbox.orders("battleface")["orders"]
    assert placed["provider_ref"] == made[0]["order_number"]
    assert placed["response"]["items"][0]["policy_number"] == f"{made[0]['order_number']}-1"
    assert placed["provider_status"] == "Pending"


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"premium": 25}, 400, "Premium mismatch"),
        ({"hostcountrystate": "TX"}, 406, "0 active products match"),
        ({"quote_id": "nosuchquote"}, 406, "not found"),
    ],
)
def test_battleface_refusals_fail_with_the_message_kept(runtime, db, sandbox, quote, change, status, says):
    step = submit(runtime, "battleface", {**battleface_order(quote), **change})
    assert settle(runtime, step.order_id) == Status.FAILED
    failed = store.get_order(db, step.order_id)
    assert failed["last_error"]["status"] == status
    assert says in failed["last_error"]["message"]
    assert len(failed["attempts"]) == 1


def test_battleface_two_matching_products_is_406(runtime, db, sandbox, quote):
    sandbox.admin("battleface/products", {"program_id": 10, "state": "OH"})
    step = submit(runtime, "battleface", battleface_order(quote))
    assert settle(runtime, step.order_id) == Status.FAILED
    assert "2 active products" in store.get_order(db, step.order_id)["last_error"]["message"]


def test_battleface_lost_answer_is_in_doubt(runtime, db, sandbox, quote):
    sandbox.script("battleface", script=["drop_after_create"])
    step = submit(runtime, "battleface", battleface_order(quote))
    assert settle(runtime, step.order_id) == Status.IN_DOUBT
    assert sandbox.orders("battleface")["create_requests"] == 1


def test_battleface_503_is_retried_but_a_502_is_never_resent(runtime, db, sandbox, quote):
    # 503: battleface turned the request away unprocessed. 502: a gateway may answer it after battleface issued the
    # policy, and battleface has no key and no lookup, so a resend could issue a second policy.
    sandbox.script("battleface", script=[503])
    step = submit(runtime, "battleface", battleface_order(quote))
    assert settle(runtime, step.order_id) == Status.PLACED
    assert [a["outcome"] for a in store.get_order(db, step.order_id)["attempts"]] == ["retryable", "placed"]
    sandbox.script("battleface", script=[{"status": 502, "after_create": True}])
    second = submit(runtime, "battleface", battleface_order(sandbox.admin("battleface/quotes", {})["quote_id"]))
    assert settle(runtime, second.order_id) == Status.IN_DOUBT
    assert [a["outcome"] for a in store.get_order(db, second.order_id)["attempts"]] == ["in_doubt"]
    assert sandbox.orders("battleface")["count"] == 2  # one policy each: none issued twice


def test_webroot_cart_is_converted_and_key_codes_recorded(runtime, db, sandbox, cart):
    step = submit(runtime, "webroot", webroot_order(cart))
    assert settle(runtime, step.order_id) == Status.PLACED
    placed = store.get_order(db, step.order_id)
    assert placed["provider_ref"] == cart
    assert placed["response"]["Items"][0]["KeyCode"] == sandbox.orders("webroot")["orders"][0]["Items"][0]["KeyCode"]
    assert placed["response"]["Customers"]["Billing"]["CustomerId"]


def test_webroot_converting_a_cart_twice_fails_with_the_message_kept(runtime, db, sandbox, cart):
    assert settle(runtime, submit(runtime, "webroot", webroot_order(cart)).order_id) == Status.PLACED
    second = submit(runtime, "webroot", webroot_order(cart, PurchaseOrder="P2"))
    assert settle(runtime, second.order_id) == Status.FAILED
    failed = store.get_order(db, second.order_id)
    assert (failed["last_error"]["status"], failed["last_error"]["code"]) == (400, "CartAlreadyConverted")
    assert len(failed["attempts"]) == 1


@pytest.mark.parametrize("fault", ["drop_after_create", "drop"])
def test_webroot_lost_answer_is_reconciled_by_reading_the_cart(runtime, db, sandbox, cart, fault):
    sandbox.script("webroot", script=[fault])
    step = submit(runtime, "webroot", webroot_order(cart))
    assert settle(runtime, step.order_id) == Status.PLACED
    made = sandbox.orders("webroot")
    assert made["count"] == 1  # one converted cart
    outcomes = [a["outcome"] for a in store.get_order(db, step.order_id)["attempts"]]
    assert outcomes == ["in_doubt", "placed"]
    # drop_after_create: the cart read found the order, no second convert; drop: the cart was open, sent again
    assert made["create_requests"] == (1 if fault == "drop_after_create" else 2)


def test_webroot_order_after_the_token_expired_succeeds_with_one_refresh(runtime, db, sandbox):
    sandbox.admin("webroot/tokens", {"ttl": 1.5})
    first = submit(runtime, "webroot", webroot_order(sandbox.admin("webroot/carts", {})["VendorOrderCode"]))
    assert settle(runtime, first.order_id) == Status.PLACED
    before = sandbox.admin("webroot/grants")
    time.sleep(1.6)  # the access token has expired
    second = submit(runtime, "webroot", webroot_order(sandbox.admin("webroot/carts", {})["VendorOrderCode"]))
    assert settle(runtime, second.order_id) == Status.PLACED
    after = sandbox.admin("webroot/grants")
    assert after["refresh_token"] - before["refresh_token"] == 1
    assert after["password"] == before["password"]
    assert [a["http_status"] for a in store.get_order(db, second.order_id)["attempts"]] == [201]


def test_webroot_sandbox_speaks_xml(sandbox, cart):
    from orderrelay.sandbox.webroot import CREDENTIALS

    body = (
        b'<CreateOrderRequestServiceModel xmlns="http://schemas.datacontract.org/2004/07/Webroot.UnityAPI.'
        b'ServiceExtension.ECom.Models"><PaymentMethod>PurchaseOrder</PaymentMethod>'
        b"<PurchaseOrder>P4713A20</PurchaseOrder><VendorOrderCode>" + cart.encode() + b"</VendorOrderCode>"
        b"</CreateOrderRequestServiceModel>"
    )
    import base64
    import json

    pair = base64.b64encode(f"{CREDENTIALS['CLIENT_ID']}:{CREDENTIALS['CLIENT_SECRET']}".encode()).decode()
    form = f"grant_type=password&username={CREDENTIALS['USERNAME']}&password={CREDENTIALS['PASSWORD']}".encode()
    req = urllib.request.Request(
        f"{sandbox.url}/webroot/auth/token", data=form, headers={"Authorization": f"Basic {pair}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        token = json.load(resp)["access_token"]
    req = urllib.request.Request(
        f"{sandbox.url}/webroot/service/api/ecom/shop/orders",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml", "Accept": "application/xml"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    assert resp.status == 201
    assert f"<VendorOrderCode>{cart}</VendorOrderCode>" in text
    assert "<KeyCode>" in text
