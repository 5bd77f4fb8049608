"""Jobs not yet taken in, as orderrelay's producer told Redis: so that none is lost in kombu's one blind spot.

kombu hands a message to a worker in two steps: it pops the message from its queue (BRPOP), then records it as
unacknowledged. A worker SIGKILLed between the two (about a millisecond) takes the message with it: it is in
neither place, and no visibility timeout brings it back. So the Python producer (``orderrelay.producer.send``)
also notes each job it sent in one Redis hash (message id -> the job), and a worker removes that note once the
job is a row in Postgres. The sweep looks at the notes older than a grace period: one whose job is a row is
removed; one whose message is neither queued (the submit queue is empty) nor held unacknowledged by a worker is
sent again under the same message id, which intake deduplicates. With ``appendfsync always`` no job the producer
sent is lost; a raw producer that sends the task by name (no note) has kombu's own guarantee only.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import redis

from orderrelay.foundation.constants import QUEUE_ORDERS

KEY = "orderrelay:jobs-not-taken-in"
log = logging.getLogger("orderrelay.core.pending")


@functools.cache
def client_for(broker_url: str) -> redis.Redis | None:
    """A Redis client for the notes, when the broker is Redis (another broker has no such blind spot to cover)."""
    if not broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        return None
    return redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)


def note(client: redis.Redis | None, message_id: str, kwargs: dict) -> None:
    """The producer sent this job (its card fields sealed, as in the message)."""
    if client is not None:
        client.hset(KEY, message_id, json.dumps({"at": time.time(), "kwargs": kwargs}))


def taken_in(client: redis.Redis | None, message_id: str | None) -> None:
    """The job is a row now: no need to look for it any more (a note left by a Redis error the sweep removes)."""
    if client is not None and message_id:
        try:
            client.hdel(KEY, message_id)
        except redis.RedisError:
            log.warning("could not remove the note of a job taken in; the sweep will")


def unacked_headers(client: redis.Redis) -> Iterator[dict]:
    """The headers of each message workers hold unacknowledged (kombu's ``unacked`` hash: [message, exchange,
    routing key] per delivery tag); entries that are not such messages are passed over."""
    for _, raw in client.hscan_iter("unacked", count=1000):
        try:
            headers = json.loads(raw)[0]["headers"]
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        if isinstance(headers, dict):
            yield headers


def lost(client: redis.Redis | None, has_row: Any, *, grace: float, limit: int = 1000) -> list[tuple[str, dict]]:
    """Notes older than ``grace`` whose job is neither a row (``has_row(ids)`` -> the ids that are) nor anywhere in
    Redis: (message id, kwargs) of each, to send again. Notes whose job is a row are removed."""
    if client is None or client.llen(QUEUE_ORDERS):  # jobs still queued: any note may be one of them
        return []
    now, old = time.time(), {}
    for message_id, raw in client.hscan_iter(KEY, count=1000):
        entry = json.loads(raw)
        if now - entry["at"] > grace:
            old[message_id.decode()] = entry
        if len(old) >= limit:
            break
    if not old:
        return []
    rows = set(has_row(list(old)))
    if rows:
        client.hdel(KEY, *rows)
    elsewhere = rows | {headers.get("id") for headers in unacked_headers(client)}
    found = [(message_id, entry["kwargs"]) for message_id, entry in old.items() if message_id not in elsewhere]
    for message_id, kwargs in found:  # looked at again only after another grace period
        client.hset(KEY, message_id, json.dumps({"at": now, "kwargs": kwargs}))
    return found


def count(client: redis.Redis | None) -> int | None:
    return None if client is None else client.hlen(KEY)
