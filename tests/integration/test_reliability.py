"""Claims under races, cancel during a wait, operator retry and resolve, scheduled retry rounds, the breaker."""

from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.rows import dict_row

from orderrelay.cli import main
from orderrelay.core import operations, pipeline
from orderrelay.foundation.breaker import Guard
from orderrelay.foundation.constants import Status
from orderrelay.foundation.errors import ActionRefused
from orderrelay.sandbox.samples import chaiz_order
from orderrelay.sandbox.samples import extend_order as sample_order
from orderrelay.store import orders as store

pytestmark = pytest.mark.integration


def submit(runtime, order=None, **extra):
    job = {"provider": "extend", "order": order or sample_order(f"r-{uuid.uuid4().hex[:8]}"), **extra}
    return pipeline.intake(runtime, job, message_id=str(uuid.uuid4()))


def test_ten_claims_at_once_one_wins(runtime, db, database_url):
    step = submit(runtime)
    barrier = threading.Barrier(10)
    wins = []

    def claim():
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            barrier.wait()
            wins.append(store.claim(conn, step.order_id, lease=30, reason="claimed"))

    threads = [threading.Thread(target=claim) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([w for w in wins if w]) == 1
    assert len(store.get_order(db, step.order_id)["attempts"]) == 1


def test_two_workers_placing_the_same_order_make_one_provider_order(runtime, db, sandbox):
    sandbox.script(latency_ms=200)
    step = submit(runtime)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(pipeline.place(runtime, step.order_id).status)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["placed", "unclaimed", "unclaimed", "unclaimed"]
    assert sandbox.orders()["count"] == 1


def test_cancel_during_a_wait_means_the_provider_is_never_called(runtime, db, sandbox):
    step = submit(runtime, order=sample_order("r-wait", transactionDelay=0.5 / 86400))
    assert operations.cancel(db, step.order_id, reason="customer changed their mind") == Status.CANCELED
    time.sleep(0.6)
    assert pipeline.place(runtime, step.order_id).status == "unclaimed"  # the countdown message arrives: nothing
    assert pipeline.sweep(runtime) == []
    assert sandbox.orders()["create_requests"] == 0
    events = store.get_order(db, step.order_id)["events"]
    assert events[-1]["reason"] == "customer changed their mind"


def test_cancelling_a_placed_order_is_refused_clearly(runtime, db, sandbox):
    step = submit(runtime)
    pipeline.place(runtime, step.order_id)
    with pytest.raises(ActionRefused, match="placed with the provider; cancel it there"):
        operations.cancel(db, step.order_id)


def test_operator_retry_of_a_failed_order_starts_a_new_round_with_the_same_key(runtime, db, sandbox):
    sandbox.script(script=[503, 503, 503])
    step = submit(runtime)
    for _ in range(3):
        time.sleep(0.6)
        pipeline.place(runtime, step.order_id)
    assert store.get_order(db, step.order_id)["status"] == Status.FAILED
    assert operations.retry(db, step.order_id) == "extend"
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    placed = store.get_order(db, step.order_id)
    assert len({a["idempotency_key"] for a in placed["attempts"]}) == 1
    assert [e["reason"] for e in placed["events"] if e["to_status"] == "queued"][-1] == "retried by an operator"
    with pytest.raises(ActionRefused, match="only failed or in_doubt"):
        operations.retry(db, step.order_id)


def test_resolve_settles_an_in_doubt_order_by_hand(runtime, db, sandbox):
    plan = sandbox.admin("chaiz/plans", {})
    sandbox.script("chaiz", script=["drop_after_create", "drop_after_create"])
    first, second = (
        pipeline.intake(
            runtime,
            {"provider": "chaiz", "order": chaiz_order(plan["searchResultPlanId"])},
            message_id=str(uuid.uuid4()),
        )
        for _ in range(2)
    )
    for step in (first, second):
        assert pipeline.place(runtime, step.order_id).status == Status.IN_DOUBT
    assert operations.resolve(db, first.order_id, placed_ref="100777", reason="Chaiz support confirmed") == "placed"
    assert operations.resolve(db, second.order_id, placed_ref=None, reason="Chaiz has no such order") == "failed"
    settled = store.get_order(db, first.order_id)
    assert (settled["status"], settled["provider_ref"]) == (Status.PLACED, "100777")
    assert settled["events"][-1]["reason"] == "Chaiz support confirmed"
    with pytest.raises(ActionRefused, match="not in_doubt"):
        operations.resolve(db, first.order_id, placed_ref=None, reason="x")


def test_an_order_an_operator_resolved_failed_is_never_sent_again_by_a_round(runtime, db, sandbox):
    # In doubt with a retryable last error: the first request dropped (it may have made the order), the lookup
    # found nothing, and the resends met 503s until the attempts ran out. The operator checked: nothing there.
    sandbox.script(script=["drop", 503, 503, 503, 503, 503])
    step = submit(runtime)
    for _ in range(4):
        pipeline.place(runtime, step.order_id)
        time.sleep(0.6)
    order = store.get_order(db, step.order_id)
    assert order["status"] == Status.IN_DOUBT and order["last_error"]["kind"] == "retryable"
    sent = sandbox.orders()["count"]
    assert operations.resolve(db, step.order_id, placed_ref=None, reason="Extend support: no such order") == "failed"
    sandbox.script(script=[])
    assert operations.retry_failed_rounds(db, rounds=3, interval=0) == []
    order = store.get_order(db, step.order_id)
    assert (order["status"], order["last_error"]["kind"]) == (Status.FAILED, "resolved")
    assert sandbox.orders()["count"] == sent


def test_resolved_placed_keeps_no_in_doubt_error(runtime, db, sandbox):
    plan = sandbox.admin("chaiz/plans", {})
    sandbox.script("chaiz", script=["drop_after_create"])
    step = pipeline.intake(runtime, {"provider": "chaiz", "order": chaiz_order(plan["searchResultPlanId"])})
    assert pipeline.place(runtime, step.order_id).status == Status.IN_DOUBT
    operations.resolve(db, step.order_id, placed_ref="100900", reason="Chaiz support confirmed")
    assert store.get_order(db, step.order_id)["last_error"] is None  # the placed notification carries no error


def test_overlapping_round_runs_never_take_an_order_past_its_last_round(db, database_url):
    from tests.integration.test_store import insert

    ids = []
    for i in range(20):
        row = insert(db, status=Status.FAILED, message_id=f"round-{i}")
        db.execute(
            "UPDATE orders SET last_error = '{\"kind\": \"retryable\"}', updated_at = now() - interval '1 hour' "
            "WHERE id = %s",
            [row["id"]],
        )
        ids.append(row["id"])
    stop = threading.Event()
    errors: list[BaseException] = []

    def beat():  # a beat's run, as often as it can
        try:
            with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
                while not stop.is_set():
                    operations.retry_failed_rounds(conn, rounds=2, interval=0)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def rounds_fail():  # every round fails again at once (retryable): the window two runs could share
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                while not stop.is_set():
                    conn.execute(
                        "UPDATE orders SET status = 'failed', updated_at = now() - interval '1 hour' "
                        "WHERE id = ANY(%s) AND status = 'queued'",
                        [ids],
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=beat) for _ in range(3)] + [threading.Thread(target=rounds_fail)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    rounds = db.execute("SELECT max(retry_round) AS r, min(retry_round) AS lo FROM orders WHERE id = ANY(%s)", [ids])
    assert rounds.fetchone() == {"r": 2, "lo": 2}  # every order had its two rounds, none a third


def test_scheduled_rounds_retry_failed_retryable_orders_then_stop(runtime, db, sandbox):
    sandbox.script(script=[{"status": 503, "stored": True}])  # Extend replays the stored 503 for this key
    step = submit(runtime)
    for _ in range(3):
        time.sleep(0.6)
        pipeline.place(runtime, step.order_id)
    sandbox.script(script=[400])
    permanent = submit(runtime)
    pipeline.place(runtime, permanent.order_id)
    assert store.get_order(db, step.order_id)["status"] == Status.FAILED
    assert store.get_order(db, permanent.order_id)["status"] == Status.FAILED
    assert operations.retry_failed_rounds(db, rounds=2, interval=3600) == []  # not yet
    for expected_round in (1, 2):
        due = operations.retry_failed_rounds(db, rounds=2, interval=0)
        assert due == [(step.order_id, "extend")]  # never the permanent failure
        for _ in range(3):
            time.sleep(0.6)
            pipeline.place(runtime, step.order_id)
        order = store.get_order(db, step.order_id)
        assert (order["status"], order["retry_round"]) == (Status.FAILED, expected_round)
    assert operations.retry_failed_rounds(db, rounds=2, interval=0) == []  # rounds spent: left for an operator
    assert len(store.get_order(db, step.order_id)["attempts"]) == 9


def test_an_open_circuit_defers_orders_without_spending_attempts(runtime, db, sandbox, monkeypatch):
    monkeypatch.setattr(runtime, "guard", Guard(max_in_flight=100, failures=2, cooldown=0.5))
    sandbox.script(script=[503, 503])
    first, second, third = submit(runtime), submit(runtime), submit(runtime)
    assert pipeline.place(runtime, first.order_id).status == Status.RETRYING
    assert pipeline.place(runtime, second.order_id).status == Status.RETRYING  # the circuit opens
    deferred = pipeline.place(runtime, third.order_id)
    assert deferred.status == Status.QUEUED
    assert 0 < deferred.countdown <= 0.5 + 1.0  # the cooldown, shared as a pause, and a spread of up to a second
    third_row = store.get_order(db, third.order_id)
    assert third_row["attempts"] == []
    assert third_row["attempt_count"] == 0
    assert "circuit open" in third_row["events"][-1]["reason"]
    circuit = store.circuits(db)[0]
    assert (circuit["provider"], circuit["state"], circuit["worker"]) == ("extend", "open", runtime.name)
    time.sleep(deferred.countdown + 0.1)
    assert pipeline.place(runtime, third.order_id).status == Status.PLACED  # the probe succeeds
    assert store.circuits(db)[0]["state"] == "closed"


def test_cli_cancel_retry_resolve_and_status(runtime, db, sandbox):
    runner = CliRunner()
    waiting = submit(runtime, order=sample_order("r-cli", transactionDelay=1))
    result = runner.invoke(main, ["cancel", str(waiting.order_id), "--reason", "duplicate cart"])
    assert result.exit_code == 0, result.output
    assert store.get_order(db, waiting.order_id)["status"] == Status.CANCELED
    again = runner.invoke(main, ["cancel", str(waiting.order_id)])
    assert again.exit_code == 1
    assert "already canceled" in again.output
    assert runner.invoke(main, ["resolve", str(waiting.order_id), "--failed"]).exit_code == 1
    assert runner.invoke(main, ["resolve", str(waiting.order_id)]).exit_code == 2  # neither flag: usage error
    assert "not an order id" in runner.invoke(main, ["retry", "nope"]).output
    status = runner.invoke(main, ["status", "--json"])
    assert status.exit_code == 0, status.output
    counts = {(row["provider"], row["status"]): row["n"] for row in json.loads(status.output)["orders"]}
    assert counts == {("extend", "canceled"): 1}
