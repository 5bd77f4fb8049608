"""Exactly once beyond the fault matrix: lookups that must prove identity, uncertainty that outlives an attempt,
keys that expire, Adobe's correlation and request ids, a worker that wakes without its claim, and jobs that reuse
a message id or a key with another body. Real Postgres, the sandbox over real HTTP."""

from __future__ import annotations

import time
import uuid

import pytest

from orderrelay.core import operations, pipeline
from orderrelay.foundation.constants import Status
from orderrelay.sandbox.samples import adobe_order, chaiz_order, extend_order
from orderrelay.store import orders as store

pytestmark = pytest.mark.integration


def take_in(runtime, provider: str, order: dict, **extra):
    job = {"provider": provider, "order": order, **extra}
    return pipeline.intake(runtime, job, message_id=str(uuid.uuid4()))


def settle(runtime, order_id, limit: int = 40):
    """Play the worker: place again whenever the order is due, until it ends."""
    for _ in range(limit):
        step = pipeline.place(runtime, order_id)
        if step.status not in (Status.RETRYING, Status.QUEUED, "unclaimed"):
            return step.status
        time.sleep(0.1)
    pytest.fail("the order did not end")


def extend_made_elsewhere(sandbox, order: dict) -> str:
    """An order made at Extend by someone else (another integration of the merchant's), not by orderrelay."""
    import json
    import urllib.request

    def post(path, body, headers):
        req = urllib.request.Request(
            f"{sandbox.url}/extend{path}", json.dumps(body).encode(), {"Content-Type": "application/json", **headers}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    grant = {"grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret"}
    token = post("/auth/oauth/token", grant, {})["access_token"]
    headers = {"X-Extend-Access-Token": token, "Accept": "application/json; version=2022-02-01"}
    return post("/orders", order, {**headers, "X-Idempotency-Key": str(uuid.uuid4())})["id"]


def test_an_extend_lookup_never_adopts_another_order_with_the_same_transaction_id(runtime, db, sandbox):
    elsewhere = extend_order("T-shared")
    elsewhere["lineItems"][0]["plan"] = {"id": "PLAN-TV-5Y", "purchasePrice": 8999}
    foreign = extend_made_elsewhere(sandbox, elsewhere)
    ours = extend_order("T-shared")
    a = take_in(runtime, "extend", ours, idempotency_key="KA")
    sandbox.script(script=["drop"])  # A's first request is lost: it looks up T, finds only the foreign order
    assert settle(runtime, a.order_id) == Status.PLACED
    sandbox.script(script=["drop"])  # the very same order under another key: it finds A's, which A has recorded
    b = take_in(runtime, "extend", {**ours}, idempotency_key="KB")
    assert settle(runtime, b.order_id) == Status.PLACED
    made = {o["id"] for o in sandbox.orders()["orders"]}
    refs = {store.get_order(db, step.order_id)["provider_ref"] for step in (a, b)}
    assert len(made) == 3 and foreign not in refs and len(refs) == 2 and refs < made


def test_a_lookup_precedes_every_resend_after_any_uncertain_outcome_even_a_day_later(runtime, db, sandbox):
    # Made, answer lost; then every lookup fails: the order ends in_doubt (never failed). A day later Extend has
    # forgotten the key; an operator's retry still looks up first, finds the order, and sends nothing.
    sandbox.script(script=["drop_after_create"], lookup_script=[500] * runtime.settings.max_attempts)
    step = take_in(runtime, "extend", extend_order(f"T-{uuid.uuid4().hex[:6]}"))
    assert settle(runtime, step.order_id) == Status.IN_DOUBT
    assert [a["outcome"] for a in store.get_order(db, step.order_id)["attempts"]] == [
        "in_doubt",
        "retryable",
        "retryable",
    ]
    sandbox.admin("extend/forget-keys", {})
    operations.retry(db, step.order_id)
    assert settle(runtime, step.order_id) == Status.PLACED
    made = sandbox.orders()
    assert (made["count"], made["create_requests"]) == (1, 1)
    assert store.get_order(db, step.order_id)["provider_ref"] == made["orders"][0]["id"]


def test_a_refused_resend_after_an_uncertain_attempt_is_looked_up_once_more(runtime, db, sandbox):
    cart = sandbox.admin("webroot/carts", {})["VendorOrderCode"]
    # The first convert goes out and its answer is lost; the cart read lags and shows it open, so the resend goes
    # out and is refused (the first one converted it); the read after the refusal finds our order.
    sandbox.script("webroot", script=["drop_after_create"], lookup_script=["stale"])
    order = {"VendorOrderCode": cart, "PaymentMethod": "PurchaseOrder", "PurchaseOrder": "P9"}
    step = take_in(runtime, "webroot", order)
    assert settle(runtime, step.order_id) == Status.PLACED
    made = sandbox.orders("webroot")
    assert (made["count"], made["create_requests"]) == (1, 2)
    assert store.get_order(db, step.order_id)["events"][-1]["reason"].startswith("found by lookup")


def test_adobe_renews_its_correlation_id_after_an_answer_and_keeps_it_across_a_lost_one(runtime, db, sandbox):
    customer, offer = sandbox.admin("adobe_vip/customers", {})["customerId"], sandbox.admin("adobe_vip/offers", {})
    sandbox.script("adobe_vip", script=[{"status": 429, "retry_after": 0.05}, "drop_after_create"])
    step = take_in(runtime, "adobe_vip", adobe_order(customer, offer["offerId"]))
    assert settle(runtime, step.order_id) == Status.PLACED
    keys = [a["idempotency_key"] for a in store.get_order(db, step.order_id)["attempts"]]
    assert len(keys) == 3
    assert keys[0] != keys[1]  # Adobe answered 429 (and replays it for that id): a new id
    assert keys[1] == keys[2]  # the answer was lost: the same id, and Adobe replays the order it made
    assert sandbox.orders("adobe_vip")["count"] == 1


def test_adobe_after_a_401_resends_with_a_new_request_id(runtime, db, sandbox):
    customer, offer = sandbox.admin("adobe_vip/customers", {})["customerId"], sandbox.admin("adobe_vip/offers", {})
    first = take_in(runtime, "adobe_vip", adobe_order(customer, offer["offerId"]))
    assert settle(runtime, first.order_id) == Status.PLACED  # a token is cached
    sandbox.admin("adobe_vip/tokens", {"expire": True})  # the next create gets a 401, then goes again
    second = take_in(runtime, "adobe_vip", adobe_order(customer, offer["offerId"], externalReferenceId="cart-2"))
    assert settle(runtime, second.order_id) == Status.PLACED  # a reused X-Request-Id would be refused (4120)
    assert sandbox.orders("adobe_vip")["count"] == 2


def test_adobe_cancelled_after_creation_is_failed(runtime, db, sandbox):
    customer, offer = sandbox.admin("adobe_vip/customers", {})["customerId"], sandbox.admin("adobe_vip/offers", {})
    step = take_in(runtime, "adobe_vip", adobe_order(customer, offer["offerId"]))
    settle(runtime, step.order_id)
    sandbox.admin(f"adobe_vip/orders/{store.get_order(db, step.order_id)['provider_ref']}/status", {"status": "1008"})
    assert pipeline.follow_up(runtime) == 1
    assert store.get_order(db, step.order_id)["status"] == Status.FAILED


@pytest.mark.parametrize(
    ("provider", "marked", "after_sweep"),
    [
        ("extend", False, Status.QUEUED),  # frozen while it waited (a token, a turn): nothing was sent
        ("chaiz", False, Status.QUEUED),
        ("chaiz", True, Status.IN_DOUBT),  # frozen once marked as sending (its connection open): as if mid-call
    ],
)
def test_a_worker_that_wakes_after_losing_its_claim_does_not_send(provider, marked, after_sweep, runtime, db, sandbox):
    plan = sandbox.admin("chaiz/plans", {})
    order = extend_order("T-frozen") if provider == "extend" else chaiz_order(plan["searchResultPlanId"])
    step = take_in(runtime, provider, order)
    claim = store.claim(db, step.order_id, lease=0.2, reason="claimed")  # then it froze for a whole lease
    if marked:
        store.mark_sending(db, step.order_id, claim_token=claim["claim_token"], attempt_id=claim["attempt_id"])
    since = time.monotonic() - runtime.settings.lease_seconds
    time.sleep(0.3)
    pipeline.sweep(runtime)  # the lease ran out: the sweep took the claim back
    assert store.get_order(db, step.order_id)["status"] == after_sweep
    woke = pipeline.attempt(runtime, {**claim, "since": since})
    assert sandbox.orders(provider)["create_requests"] == 0  # it did not send
    reasons = [e["reason"] for e in store.get_order(db, step.order_id)["events"]]
    assert any("late answer" in r and "not sent" in r for r in reasons)
    # Nothing was sent, so the in-doubt Chaiz order is given back; either way it is placed exactly once.
    ended = pipeline.place(runtime, step.order_id).status if woke.place_now else settle(runtime, step.order_id)
    assert ended == Status.PLACED
    assert sandbox.orders(provider)["count"] == 1


def test_a_message_id_reused_for_another_job_is_recorded_not_dropped(runtime, db, sandbox):
    first = pipeline.intake(runtime, {"provider": "extend", "order": extend_order("T-m1")}, message_id="cart-77")
    other = {"provider": "extend", "order": extend_order("T-m2")}
    again = pipeline.intake(runtime, other, message_id="cart-77")
    once_more = pipeline.intake(runtime, other, message_id="cart-77")  # that message redelivered: no new row
    assert (again.status, again.created, again.conflict) == (Status.REJECTED, True, True)
    assert once_more.order_id == again.order_id and not once_more.created
    rejected = store.get_order(db, again.order_id)
    assert rejected["errors"] == {
        "_message_id": [f"Message id cart-77 was already used by order {first.order_id} for another job."]
    }
    assert rejected["request"]["order"]["transactionId"] == "T-m2"  # what came is kept
    assert db.execute("SELECT count(*) AS n FROM orders").fetchone()["n"] == 2


def test_a_key_reused_with_another_body_is_recorded_and_the_first_order_untouched(runtime, db, sandbox):
    first = take_in(runtime, "extend", extend_order("T-k1"), idempotency_key="cart-88")
    again = take_in(runtime, "extend", extend_order("T-k2"), idempotency_key="cart-88")
    assert (again.status, again.conflict) == (Status.REJECTED, True)
    rejected = store.get_order(db, again.order_id)
    assert rejected["errors"] == {"idempotency_key": [f"Already used by order {first.order_id} with another body."]}
    assert rejected["idempotency_key"] == "cart-88"
    assert store.get_order(db, key="cart-88")["id"] == first.order_id  # the key still names the first order


def test_the_cvc_is_erased_at_every_end_an_operator_or_the_sweep_gives(runtime, db, sandbox):
    plan = sandbox.admin("chaiz/plans", {})

    def chaiz_job():
        return take_in(runtime, "chaiz", chaiz_order(plan["searchResultPlanId"]))

    def cvc(order_id):
        return store.get_order(db, order_id)["request"]["payment"].get("cvc")

    waiting = take_in(runtime, "chaiz", chaiz_order(plan["searchResultPlanId"]), not_before="2099-01-01T00:00:00Z")
    assert cvc(waiting.order_id) is not None
    operations.cancel(db, waiting.order_id)
    assert cvc(waiting.order_id) is None  # canceled
    lost = chaiz_job()
    claim = store.claim(db, lost.order_id, lease=0.05, reason="claimed")  # its worker died mid-call
    store.mark_sending(db, lost.order_id, claim_token=claim["claim_token"], attempt_id=claim["attempt_id"])
    time.sleep(0.1)
    pipeline.sweep(runtime)
    assert (store.get_order(db, lost.order_id)["status"], cvc(lost.order_id)) == (Status.IN_DOUBT, None)
    sandbox.script("chaiz", script=["drop_after_create"])
    doubt = chaiz_job()
    assert pipeline.place(runtime, doubt.order_id).status == Status.IN_DOUBT
    assert cvc(doubt.order_id) is None  # in doubt
    operations.resolve(db, lost.order_id, placed_ref=None, reason="Chaiz has none")
    assert cvc(lost.order_id) is None  # resolved
