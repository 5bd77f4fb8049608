"""The producer's notes of jobs not yet taken in (orderrelay.core.pending): which are lost, which are not.

A fast unit test on fakeredis, laid out the way kombu lays out its Redis keys: the queue ``orders`` (a list) and
the ``unacked`` hash of messages workers hold.
"""

from __future__ import annotations

import json
import time

import fakeredis
import pytest

from orderrelay.core import pending


@pytest.fixture
def client():
    return fakeredis.FakeRedis()


def _note(client, message_id: str, age: float) -> None:
    client.hset(pending.KEY, message_id, json.dumps({"at": time.time() - age, "kwargs": {"provider": "x"}}))


def _held(client, message_id: str) -> None:
    client.hset("unacked", message_id, json.dumps([{"headers": {"id": message_id}}, "", "orders"]))


def test_a_note_whose_job_is_nowhere_is_lost_and_looked_at_again_only_after_another_grace(client):
    _note(client, "m-lost", age=10)
    assert pending.lost(client, lambda ids: [], grace=4) == [("m-lost", {"provider": "x"})]
    assert pending.lost(client, lambda ids: [], grace=4) == []  # re-stamped: the job was just sent again
    assert pending.count(client) == 1  # the note stays until the job is a row


@pytest.mark.parametrize(
    ("cell", "expect_lost", "expect_notes"),
    [
        ("young", [], 1),  # sent less than a grace ago: may still be on its way
        ("row", [], 0),  # already an order: the note is removed
        ("held", [], 1),  # a worker holds it unacknowledged: the visibility timeout brings it back if it dies
        ("queued", [], 1),  # something is queued: any note may be that message
    ],
)
def test_a_note_whose_job_is_somewhere_is_not_lost(client, cell, expect_lost, expect_notes):
    _note(client, "m-1", age=1 if cell == "young" else 10)
    if cell == "held":
        _held(client, "m-1")
    if cell == "queued":
        client.lpush("orders", b"{}")
    rows = ["m-1"] if cell == "row" else []
    assert pending.lost(client, lambda ids: [i for i in ids if i in rows], grace=4) == expect_lost
    assert pending.count(client) == expect_notes


def test_taken_in_removes_the_note_and_a_redis_error_is_not_the_task_s_failure(client, caplog):
    _note(client, "m-2", age=0)
    pending.taken_in(client, "m-2")
    assert pending.count(client) == 0
    server = fakeredis.FakeServer()
    server.connected = False
    pending.taken_in(fakeredis.FakeRedis(server=server), "m-3")  # raises nothing
    assert "the sweep will" in caplog.text


def test_no_notes_on_a_broker_that_is_not_redis():
    assert pending.client_for("amqp://guest@localhost//") is None
    assert pending.lost(None, lambda ids: ids, grace=0) == [] and pending.count(None) is None
