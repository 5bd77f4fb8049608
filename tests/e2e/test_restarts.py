"""Workers ride through a Redis restart (from its append-only file) and a PostgreSQL immediate restart without
exiting, and a killed worker's reserved jobs come back in seconds: real servers of the test's own, real workers
and beat, the sandbox over HTTP."""

from __future__ import annotations

import contextlib
import time
import uuid

import psycopg
import pytest
from celery import Celery

from orderrelay.core.broker import reserved
from orderrelay.foundation.constants import QUEUE_ORDERS, Status
from orderrelay.sandbox.samples import extend_order
from orderrelay.tools import processes
from orderrelay.tools.servers import PostgresServer, RedisServer
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def own(tmp_path, sandbox, logs):
    """A Redis (appendfsync always) and a PostgreSQL of this test's own, migrated, and the environment for them."""
    from orderrelay.store.db import migrate

    redis_server, postgres = RedisServer(tmp_path), PostgresServer(tmp_path / "pg")
    postgres.folder.mkdir()
    redis_server.start()
    postgres.start()
    migrate(postgres.url)
    env = processes.environment(
        redis_server.url, postgres.url, sandbox.port, sweep_interval="1", lease_seconds="5", requeue_grace="5"
    )
    try:
        yield redis_server, postgres, env
    finally:
        redis_server.stop()
        postgres.stop()


def placed(database_url: str, prefix: str) -> int:
    with psycopg.connect(database_url) as conn:
        query = "SELECT count(*) FROM orders WHERE idempotency_key LIKE %s AND status = 'placed'"
        return conn.execute(query, [prefix + "%"]).fetchone()[0]


def send(env: dict, keys: list[str]) -> list[str]:
    """Extend jobs, sent as checkout code sends them: with orderrelay's producer, whose note of each job lets the
    sweep send again one that a worker SIGKILLed in kombu's hand-over took with it (a raw ``send_task`` has only
    kombu's guarantee, which that kill breaks: the README's "Guarantees, and their limits")."""
    from orderrelay.foundation.vault import Vault
    from orderrelay.producer import send as submit

    app = Celery(broker=env["ORDERRELAY_BROKER_URL"], set_as_current=False)
    vault = Vault([env["ORDERRELAY_FERNET_KEYS"]])
    return [submit(app, vault, "extend", extend_order(key), idempotency_key=key) for key in keys]


def test_workers_ride_through_a_redis_restart_and_a_postgres_restart(own, sandbox, logs):
    redis_server, postgres, env = own
    sandbox.script(latency_ms=150)
    prefix = f"ride-{uuid.uuid4().hex[:6]}-"
    keys = [f"{prefix}{i}" for i in range(240)]
    with contextlib.ExitStack() as stack:
        workers = [processes.worker(env, logs, name=f"ride-{n}", concurrency=16) for n in range(2)]
        stack.callback(lambda: [w.stop() for w in workers])
        beat = processes.beat(env, logs)
        stack.callback(beat.stop)
        for part in range(3):  # three Redis restarts, each with calls in flight and jobs held by the workers
            send(env, keys[part * 60 : (part + 1) * 60])
            time.sleep(0.7 + part * 0.4)
            redis_server.restart(down=0.5 + part * 0.5)  # SIGKILL, then up again from its append-only file
        send(env, keys[180:])
        time.sleep(1.0)
        postgres.restart_immediately(down=1.0)  # every connection cut, transactions aborted
        wait_until(lambda: placed(postgres.url, prefix) == len(keys), 120, message="every order placed")
        for worker in workers:
            assert worker.alive(), worker.log()[-3000:]
            assert "Unrecoverable error" not in worker.log()
    assert sandbox.orders()["count"] == len(keys)  # and none twice


def test_a_killed_workers_reserved_jobs_come_back_in_seconds(own, sandbox, logs):
    redis_server, postgres, env = own
    sandbox.script(latency_ms=3000)  # each job held a while: the worker holds many when it dies
    prefix = f"held-{uuid.uuid4().hex[:6]}-"
    keys = [f"{prefix}{i}" for i in range(40)]
    victim = processes.worker(env, logs, name="held", concurrency=8)
    try:
        send(env, keys)
        wait_until(lambda: reserved(redis_server.url)["jobs_before_intake"] > 0, 30, message="jobs reserved")
    finally:
        victim.popen.kill()
        victim.popen.wait()
    held = reserved(redis_server.url)
    assert held["reserved"] > 0  # status shows what a dead worker left
    sandbox.script(latency_ms=0)
    died = time.monotonic()
    heir = processes.worker(env, logs, name="heir", concurrency=8)
    beat = processes.beat(env, logs)
    try:
        try:
            wait_until(lambda: placed(postgres.url, prefix) + in_doubt(postgres.url, prefix) == len(keys), 90)
        except pytest.fail.Exception:
            pytest.fail(
                f"not placed or in doubt after 90 s: {unended(postgres.url, prefix)}; not rows yet: "
                f"{rowless(postgres.url, keys)}; the broker: {reserved(redis_server.url)}",
                pytrace=False,
            )
        assert time.monotonic() - died < 75  # the 30 s visibility timeout, not an hour
        wait_until(lambda: reserved(redis_server.url)["jobs_before_intake"] == 0, 30, message="no job left reserved")
    finally:
        heir.stop()
        beat.stop()


def unended(database_url: str, prefix: str) -> list:
    """Each order of ``prefix`` not yet placed or in doubt, with its last event's reason."""
    with psycopg.connect(database_url) as conn:
        query = (
            "SELECT o.idempotency_key, o.status, o.attempt_count, o.lease_until, o.due_at, o.expected_at, "
            "(SELECT e.reason FROM order_events e WHERE e.order_id = o.id ORDER BY e.id DESC LIMIT 1) AS reason "
            "FROM orders o WHERE o.idempotency_key LIKE %s AND o.status NOT IN ('placed', 'in_doubt')"
        )
        return conn.execute(query, [prefix + "%"]).fetchall()


def rowless(database_url: str, keys: list[str]) -> list[str]:
    """The keys of jobs that are not rows yet."""
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT idempotency_key FROM orders WHERE idempotency_key = ANY(%s)", [keys]).fetchall()
    return sorted(set(keys) - {key for (key,) in found})


def in_doubt(database_url: str, prefix: str) -> int:
    with psycopg.connect(database_url) as conn:
        query = "SELECT count(*) FROM orders WHERE idempotency_key LIKE %s AND status = %s"
        return conn.execute(query, [prefix + "%", Status.IN_DOUBT]).fetchone()[0]


def test_a_job_lost_in_kombus_hand_over_is_sent_again_under_its_message_id(own, sandbox, logs):
    # A worker SIGKILLed between BRPOP and recording the message as unacknowledged takes it with it: it is in
    # neither place. The same state, made exactly: the message popped from the queue by hand, as that BRPOP did.
    import redis

    from orderrelay.core import pending

    redis_server, postgres, env = own
    keys = [f"handover-{uuid.uuid4().hex[:6]}-{i}" for i in range(3)]
    order_ids = send(env, keys)
    client = redis.Redis.from_url(redis_server.url)
    assert client.rpop(QUEUE_ORDERS) is not None  # the oldest job: gone from Redis, as in the blind spot
    assert client.llen(QUEUE_ORDERS) == 2 and pending.count(client) == 3
    workers = [processes.worker(env, logs, name="handover", concurrency=8), processes.beat(env, logs)]
    try:
        wait_until(lambda: placed(postgres.url, "handover-") == 3, 60, message="the lost job placed too")
        wait_until(lambda: pending.count(client) == 0, 30, message="every note removed")
        assert "was lost before intake; sending it again" in workers[0].log()
    finally:
        for proc in workers:
            proc.stop()
    with psycopg.connect(postgres.url) as conn:
        ids = {str(r[0]) for r in conn.execute("SELECT id FROM orders WHERE idempotency_key = ANY(%s)", [keys])}
    assert ids == set(order_ids)  # the ids submit_order returned: one order per job
    assert sandbox.orders()["count"] == 3
