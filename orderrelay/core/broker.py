"""One Redis client per kombu channel, made once, instead of one per publish, acknowledgement or reservation.

kombu's Redis transport builds a new ``redis.Redis`` object for every publish, every ack and every message it
reserves (``Channel.conn_or_acquire``). Each costs about 85 µs of CPU (redis-py rebuilds its table of response
callbacks each time), and a worker makes five or six of them per task (the reservation, the ack and three task
events): a third of Celery's own cost per message, measured in ``orderrelay bench``. A ``redis.Redis`` object
holds no connection of its own (it borrows one from the channel's pool per command) and redis-py documents it
as safe to share between threads, so the channel keeps one and makes another only when its pool is replaced
(after a fork or a lost connection). A channel closing after Redis went away gets its last client or a
connection error, never a pool made from a connection kombu has let go of (that stopped every worker at a Redis
restart); ``tests/e2e/test_restarts.py`` restarts a real Redis three times under working workers.
"""

from __future__ import annotations

import logging
import time

import redis as redis_py
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from orderrelay.core import pending

log = logging.getLogger("orderrelay.core.broker")

_original = kombu_redis.Channel._create_client


def _create_client(self, asynchronous: bool = False):
    if asynchronous:  # kombu already keeps these (Channel.client, Channel.subclient)
        return _original(self, asynchronous=True)
    client = self.__dict__.get("_orderrelay_client")
    pool = self._pool  # not ``self.pool``: that would make a pool here, from a connection that may be closing
    if self.connection is None or self.connection.client is None:
        # The channel is closing or closed after its connection was lost (a Redis restart): kombu has let go of
        # the connection (or its details), so it cannot make a pool, and fails here with an AttributeError that
        # stops the worker (seen on the restore at close, and on the ack of a task that ran across the restart).
        # Give the last client (its pool reconnects if Redis is back), or a connection error, which kombu's close
        # and Celery's ack both handle: an unacknowledged message then comes back after the visibility timeout.
        if client is None:
            raise redis_py.ConnectionError("the channel's connection is closed")
        return client
    if client is None or pool is None or client.connection_pool is not pool:
        client = self._orderrelay_client = _original(self)
    return client


_original_append = kombu_redis.QoS.append


def _append(self, message, delivery_tag):
    """kombu pops a message (BRPOP) and then records it as unacknowledged (a second command); when Redis dies in
    between, that second command fails and kombu drops the message it holds: a job lost though Redis, with
    ``appendfsync always``, lost nothing. Here the message is handled anyway: the task runs, and its job is taken
    in (only a worker dying too, before it finishes, would lose it; a real Redis restart is tested)."""
    try:
        _original_append(self, message, delivery_tag)
    except (redis_py.ConnectionError, redis_py.TimeoutError):
        log.warning("Redis went away as a message was handed over; handling it all the same")
        virtual.QoS.append(self, message, delivery_tag)


def reuse_redis_clients() -> None:
    """Make kombu's Redis channels keep their client, and keep messages handed over as Redis dies (idempotent)."""
    kombu_redis.Channel._create_client = _create_client
    kombu_redis.QoS.append = _append


def reserved(broker_url: str, *, scan: int = 10_000) -> dict:
    """Messages workers have taken and not yet acknowledged (kombu's ``unacked`` hash on Redis): how many, how many
    of them are jobs not yet taken in (``orders.submit``), and how long the oldest has been out; and how many jobs
    the producer noted are not yet rows (``orderrelay.core.pending``: queued, reserved, or lost and soon sent again).
    A worker killed while holding them leaves them here until the visibility timeout hands them out again."""
    client = redis_py.Redis.from_url(broker_url, socket_timeout=3)
    held = client.hlen("unacked")
    oldest = client.zrange("unacked_index", 0, 0, withscores=True)
    jobs = 0
    for headers in pending.unacked_headers(client):
        jobs += headers.get("task") == "orders.submit"
        scan -= 1
        if scan <= 0:
            break
    age = round(time.time() - oldest[0][1], 1) if oldest else None
    noted = client.hlen(pending.KEY)
    locked = client.ttl("unacked_mutex")  # a restore under way, or the lock of a worker killed during one
    return {
        "reserved": held,
        "jobs_before_intake": jobs,
        "oldest_seconds": age,
        "jobs_noted_not_rows": noted,
        "restore_locked_seconds": locked if locked > 0 else 0,
    }
