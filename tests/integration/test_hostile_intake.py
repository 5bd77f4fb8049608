"""Every job the worker's intake receives ends as a row, against a real Postgres: hostile values, hostile message
ids, an error of ours, and a message that keeps failing (a poison message)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from kombu.utils.json import dumps, loads

from orderrelay.core import pipeline
from orderrelay.foundation.constants import Status
from orderrelay.sandbox.samples import extend_order
from orderrelay.store import orders as store
from orderrelay.tools.fuzz import nested, worst

pytestmark = pytest.mark.integration


def received(job):
    """The job as a worker receives it: through kombu's JSON."""
    return loads(dumps(job))


@pytest.mark.parametrize("job", worst(), ids=lambda job: str(job)[:60])
def test_each_of_the_worst_inputs_is_recorded_as_a_rejected_order(job, runtime, db):
    step = pipeline.intake(runtime, received(job), message_id=str(uuid.uuid4()), claim=True)
    row = store.get_order(db, step.order_id)
    assert row["status"] == Status.REJECTED
    assert row["errors"]  # by field path


def test_a_surrogate_in_an_otherwise_valid_order_is_refused_with_its_path(runtime, db):
    job = {"provider": "extend", "order": extend_order("t-s", analytics={"utm": "\ud800"})}
    row = store.get_order(db, pipeline.intake(runtime, received(job), message_id="m-surrogate").order_id)
    assert row["errors"] == {
        "order.analytics.utm": ["Must not hold a lone UTF-16 surrogate (it is not valid Unicode)."]
    }
    assert row["request"]["order"]["analytics"]["utm"] == "\ufffd"  # kept, cleaned


@pytest.mark.parametrize("message_id", ["m\x00id", "m\ud800id", "m" * 5000])
def test_a_hostile_message_id_is_kept_by_its_hash_and_still_deduplicates(message_id, runtime, db):
    job = {"provider": "extend", "order": extend_order("t-m")}
    first = pipeline.intake(runtime, job, message_id=message_id)
    again = pipeline.intake(runtime, job, message_id=message_id)
    assert (first.created, again.created, again.order_id) == (True, False, first.order_id)
    assert store.get_order(db, first.order_id)["message_id"].startswith("sha256:")


def test_an_error_of_ours_during_intake_is_kept_as_a_rejected_order_with_its_intake_error(runtime, db, monkeypatch):
    from orderrelay.core import envelope

    def broken(provider_id):
        raise RuntimeError("a bug for ada@example.com with card 4111 1111 1111 1111\nand a second line")

    monkeypatch.setattr(envelope, "_order_schema", broken)
    step = pipeline.intake(runtime, {"provider": "extend", "order": extend_order("t-bug")}, message_id="m-bug")
    row = store.get_order(db, step.order_id)
    assert row["status"] == Status.REJECTED
    assert "could not take this job in" in row["errors"]["_intake"][0]
    assert row["last_error"] == {
        "kind": "intake_error",
        "type": "RuntimeError",
        "message": "a bug for [e-mail] with card ***************1111",
    }
    assert row["request"]["order"]["transactionId"] == "t-bug"


def test_a_service_error_is_raised_for_a_retry_until_the_message_is_a_poison_one(runtime, db, monkeypatch):
    from orderrelay.core import envelope

    def down(*args, **kwargs):
        raise psycopg.OperationalError("statement timeout")

    monkeypatch.setattr(envelope, "_order_schema", down)
    job = {"provider": "extend", "order": extend_order("t-poison")}
    with pytest.raises(psycopg.OperationalError):  # the task retries it later: nothing is lost
        pipeline.intake(runtime, job, message_id="m-poison")
    step = pipeline.intake(runtime, job, message_id="m-poison", give_up=True)  # the message's last retry
    row = store.get_order(db, step.order_id)
    assert (row["status"], row["last_error"]["type"]) == (Status.REJECTED, "OperationalError")
    assert "kept failing with a service error" in row["errors"]["_intake"][0]


def test_a_body_that_does_not_decode_is_kept_by_its_head(runtime, db):
    step = pipeline.record_unreadable(runtime, ("[" * 5000).encode(), "nested too deeply", message_id="m-deep")
    row = store.get_order(db, step.order_id)
    assert row["status"] == Status.REJECTED
    assert row["request"] == {"_unreadable": "[" * 2000}
    assert row["errors"] == {"_message": ["Not a readable JSON job: nested too deeply."]}
    assert pipeline.record_unreadable(runtime, b"x", "again", message_id="m-deep").order_id == step.order_id


def test_the_deepest_order_a_producer_can_send_is_rejected_without_recursion_trouble(runtime, db):
    job = received({"provider": "extend", "order": nested(950)})
    row = store.get_order(db, pipeline.intake(runtime, job, message_id="m-950").order_id)
    assert row["status"] == Status.REJECTED
    assert "Nested deeper than 32 levels." in next(iter(row["errors"].values()))
