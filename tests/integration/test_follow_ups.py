"""Adobe's follow-up against the sandbox over HTTP: every documented status, an unreadable answer or an unknown
status as that order's problem only, overlapping runs that record a change once, and the deadline."""

from __future__ import annotations

import threading
import uuid

import pytest

from orderrelay.core import pipeline
from orderrelay.foundation.constants import Status
from orderrelay.sandbox.samples import adobe_order
from orderrelay.store import orders as store

pytestmark = pytest.mark.integration


@pytest.fixture
def placed(runtime, db, sandbox):
    """Adobe orders placed in the sandbox (status 1002), by count: their order ids and Adobe references."""
    customer = sandbox.admin("adobe_vip/customers", {})["customerId"]
    offer = sandbox.admin("adobe_vip/offers", {})["offerId"]

    def make(n: int) -> list[tuple[uuid.UUID, str]]:
        made = []
        for _ in range(n):
            step = pipeline.intake(runtime, {"provider": "adobe_vip", "order": adobe_order(customer, offer)})
            assert pipeline.place(runtime, step.order_id).status == Status.PLACED
            made.append((step.order_id, store.get_order(db, step.order_id)["provider_ref"]))
        return made

    return make


def move(sandbox, ref: str, status: str) -> None:
    sandbox.admin(f"adobe_vip/orders/{ref}/status", {"status": status})


def test_an_unreadable_answer_is_that_orders_problem_and_the_others_are_still_followed(runtime, db, sandbox, placed):
    (broken, broken_ref), *others = placed(4)
    sandbox.admin(f"adobe_vip/orders/{broken_ref}/unreadable", {})  # a 200 maintenance page
    for (_, ref), status in zip(others, ("1004", "1008", "1000"), strict=True):
        move(sandbox, ref, status)
    assert pipeline.follow_up(runtime) == 3
    ends = [(o["status"], o["provider_status"]) for o in (store.get_order(db, oid) for oid, _ in others)]
    assert ends == [(Status.FAILED, "1004"), (Status.FAILED, "1008"), (Status.PLACED, "1000")]  # 1008: cancelled
    kept = store.get_order(db, broken)
    assert (kept["status"], kept["last_error"]["kind"]) == (Status.PLACED, "follow_up")
    assert store.follow_up_troubles(db) == {"follow_up": 1, "follow_up_overdue": 0}  # shown by `status`
    events = len(kept["events"])
    assert pipeline.follow_up(runtime) == 0
    assert len(store.get_order(db, broken)["events"]) == events  # the same trouble is not recorded twice
    sandbox.admin(f"adobe_vip/orders/{broken_ref}/unreadable", {"unreadable": False})
    move(sandbox, broken_ref, "1000")
    assert pipeline.follow_up(runtime) == 1
    done = store.get_order(db, broken)
    assert (done["status"], done["provider_status"], done["last_error"]) == (Status.PLACED, "1000", None)
    assert pipeline.follow_up(runtime) == 0  # 1000 is final: nothing is read any more


def test_a_status_adobe_does_not_document_is_kept_and_still_followed(runtime, db, sandbox, placed):
    ((order_id, ref),) = placed(1)
    move(sandbox, ref, "1099")
    assert pipeline.follow_up(runtime) == 1
    kept = store.get_order(db, order_id)
    assert (kept["status"], kept["provider_status"]) == (Status.PLACED, "1099")
    assert "does not document" in kept["events"][-1]["reason"]
    move(sandbox, ref, "1004")
    assert pipeline.follow_up(runtime) == 1
    assert store.get_order(db, order_id)["status"] == Status.FAILED


def test_overlapping_follow_up_runs_record_a_change_once(runtime, db, sandbox, placed):
    made = placed(6)
    for _, ref in made:
        move(sandbox, ref, "1000")
    counts: list[int] = []
    runs = [threading.Thread(target=lambda: counts.append(pipeline.follow_up(runtime))) for _ in range(3)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sum(counts) == 6
    for order_id, _ in made:
        changes = [e for e in store.get_order(db, order_id)["events"] if "1002 -> 1000" in e["reason"]]
        assert len(changes) == 1
    # the statement itself: a change read by a run whose order has changed since is not recorded
    order_id, _ = made[0]
    assert not store.record_provider_status(
        db, order_id, from_status="1002", provider_status="1000", response={}, to_status=Status.PLACED, reason="x"
    )


def test_an_order_pending_past_the_deadline_is_reported_once(runtime, db, sandbox, placed):
    ((order_id, _),) = placed(1)
    db.execute("UPDATE orders SET placed_at = now() - interval '30 days' WHERE id = %s", [order_id])
    assert pipeline.follow_up(runtime) == 0
    overdue = store.get_order(db, order_id)
    assert (overdue["status"], overdue["last_error"]["kind"]) == (Status.PLACED, "follow_up_overdue")
    assert store.follow_up_troubles(db) == {"follow_up": 0, "follow_up_overdue": 1}
    events = len(overdue["events"])
    pipeline.follow_up(runtime)
    assert len(store.get_order(db, order_id)["events"]) == events


def test_the_follow_up_reads_its_orders_by_an_index(db):
    from orderrelay.store import queries
    from orderrelay.tools.scale import explain, seq_scans, shape

    db.execute(
        """
        INSERT INTO orders (id, provider_key, provider, status, provider_status, request, request_hash, updated_at)
        SELECT gen_random_uuid(), gen_random_uuid(), 'adobe_vip', 'placed', CASE WHEN i % 100 = 0 THEN '1002'
               ELSE '1000' END, '{}'::jsonb, 'h', now()
        FROM generate_series(1, 20000) AS i
        """
    )
    db.execute("ANALYZE orders")
    plan = explain(db, queries.FOLLOW_UPS, {"limit": 20})
    assert "orders_follow_ups" in shape(plan) and seq_scans(plan) == []


def test_retry_refuses_an_order_adobe_made_and_then_failed(runtime, db, sandbox, placed):
    from orderrelay.core import operations
    from orderrelay.foundation.errors import ActionRefused

    ((order_id, ref),) = placed(1)
    move(sandbox, ref, "1004")
    assert pipeline.follow_up(runtime) == 1
    with pytest.raises(ActionRefused, match=r"made it .* and then failed it"):
        operations.retry(db, order_id)
    assert store.get_order(db, order_id)["status"] == Status.FAILED
