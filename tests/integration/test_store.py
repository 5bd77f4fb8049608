"""The store against a real PostgreSQL: migrations, deduplication, claims, guarded transitions."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from orderrelay.foundation.constants import Status
from orderrelay.store import orders as store
from orderrelay.store.db import migrate

pytestmark = pytest.mark.integration


def insert(conn, **overrides):
    values = dict(
        provider="extend",
        status=Status.QUEUED,
        request={"a": 1},
        request_hash="h",
        idempotency_key=None,
        message_id=str(uuid.uuid4()),
        due_at=datetime.now(UTC),
        expected_at=None,
        reason="received",
    )
    values.update(overrides)
    return store.insert_order(conn, **values)


def test_migrate_twice_applies_nothing_the_second_time(database_url):
    assert migrate(database_url) == []


def test_the_same_idempotency_key_makes_no_second_row(db):
    first = insert(db, idempotency_key="k-1")
    again = insert(db, idempotency_key="k-1", request_hash="other")
    assert first["created"] is True
    assert again["created"] is False
    assert again["id"] == first["id"]
    assert again["request_hash"] == "h"
    assert db.execute("SELECT count(*) AS n FROM orders").fetchone()["n"] == 1


def test_a_redelivered_message_makes_no_second_row(db):
    first = insert(db, message_id="m-1")
    again = insert(db, message_id="m-1")
    assert (again["created"], again["id"]) == (False, first["id"])


def test_every_insert_writes_its_first_event(db):
    row = insert(db)
    events = db.execute("SELECT from_status, to_status, reason FROM order_events WHERE order_id = %s", [row["id"]])
    assert events.fetchall() == [{"from_status": None, "to_status": "queued", "reason": "received"}]


def test_an_order_is_claimed_once(db):
    row = insert(db)
    first = store.claim(db, row["id"], lease=30, reason="claimed")
    assert first["attempt_count"] == 1
    assert first["uncertain"] is False
    assert store.claim(db, row["id"], lease=30, reason="claimed") is None
    assert db.execute("SELECT count(*) AS n FROM attempts").fetchone()["n"] == 1


def test_an_order_not_yet_due_is_not_claimed(db):
    row = insert(db, status=Status.WAITING, due_at=datetime.now(UTC) + timedelta(minutes=5))
    assert store.claim(db, row["id"], lease=30, reason="claimed") is None


def test_a_lost_claim_cannot_record_an_outcome(db):
    row = insert(db)
    claim = store.claim(db, row["id"], lease=30, reason="claimed")
    kept = store.finish_attempt(
        db,
        order_id=row["id"],
        claim_token=uuid.uuid4(),
        attempt_id=claim["attempt_id"],
        outcome="placed",
        to_status=Status.PLACED,
        reason="placed",
    )
    assert kept is False
    assert store.get_order(db, row["id"])["status"] == Status.PLACING


def test_transitions_are_guarded_and_evented(db):
    row = insert(db, status=Status.WAITING)
    assert (
        store.transition(db, row["id"], from_statuses=(Status.PLACED,), to_status=Status.CANCELED, reason="x") is None
    )
    assert (
        store.transition(db, row["id"], from_statuses=(Status.WAITING,), to_status=Status.CANCELED, reason="by hand")
        == Status.WAITING
    )
    order = store.get_order(db, row["id"])
    assert order["status"] == Status.CANCELED
    assert [e["to_status"] for e in order["events"]] == ["waiting", "canceled"]


def test_sweep_finds_due_work_whose_message_is_not_on_its_way(db):
    now = datetime.now(UTC)
    never_sent = insert(db, status=Status.WAITING, due_at=now - timedelta(seconds=1))
    insert(db, status=Status.WAITING, due_at=now + timedelta(hours=1))  # not due yet
    insert(db, due_at=now, expected_at=now)  # its message is on its way
    lost = insert(db, status=Status.RETRYING, due_at=now - timedelta(minutes=5), expected_at=now - timedelta(minutes=5))
    assert set(store.sweep_due(db, grace=60)) == {(never_sent["id"], "extend"), (lost["id"], "extend")}
    assert store.sweep_due(db, grace=60) == []  # marked as sent: not again within the grace period


@pytest.fixture
def pool(database_url):
    from orderrelay.store.db import make_pool

    pool = make_pool(database_url, 2)
    yield pool
    pool.close()


def test_the_pool_replaces_connections_the_server_ended_without_failing_a_checkout(database_url, pool):
    with pool.connection() as conn:
        before = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [before])
    time.sleep(0.2)  # the server's goodbye reaches the idle connection's socket
    with pool.connection() as conn:
        after = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    assert after != before
    assert pool.get_stats().get("connections_lost", 0) >= 1


def test_a_checkout_after_the_server_ended_every_pooled_connection_gets_a_fresh_one(database_url):
    """Every connection of a full pool terminated at once (a restart, an operator's pg_terminate_backend): the
    next checkout gets a working connection well within its timeout, instead of testing the dead ones one by
    one with psycopg_pool's growing pauses between them (1, 2, 4 s ... which exhausted a 30 s timeout)."""
    from orderrelay.store.db import make_pool

    pool = make_pool(database_url, 8)
    try:
        held = [pool.getconn(timeout=10) for _ in range(8)]  # the pool grows to eight connections
        pids = {conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"] for conn in held}
        for conn in held:
            pool.putconn(conn)
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [list(pids)])
        time.sleep(0.2)
        for _ in range(3):
            with pool.connection(timeout=5) as conn:
                assert conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"] not in pids
    finally:
        pool.close()


def test_pooled_connections_commit_each_statement_and_roll_back_a_failed_transaction(pool, db):
    with pool.connection() as conn:
        insert(conn, message_id="m-own")
    assert db.execute("SELECT count(*) AS n FROM orders").fetchone()["n"] == 1  # seen at once elsewhere

    def fails_midway():
        with pool.connection() as conn, conn.transaction():
            insert(conn, message_id="m-undone")
            raise RuntimeError("a second statement failed")

    with pytest.raises(RuntimeError):
        fails_midway()
    assert db.execute("SELECT count(*) AS n FROM orders").fetchone()["n"] == 1
