"""One Redis client per kombu channel, made once, instead of one per publish, acknowledgement or reservation.

kombu's Redis transport builds a new ``redis.Redis`` object for every publish, every ack and every message it
reserves (``Channel.conn_or_acquire``). Each costs about 85 µs of CPU (redis-py rebuilds its table of response
callbacks each time), and a worker makes five or six of them per task (the reservation, the ack and three task
events): a third of Celery's own cost per message, measured in ``orderrelay bench``. A ``redis.Redis`` object
holds no connection of its own (it borrows one from the channel's pool per command) and redis-py documents it
as safe to share between threads, so the channel keeps one and makes another only when its pool is replaced
(after a fork or a lost connection).
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis

_original = kombu_redis.Channel._create_client


def _create_client(self, asynchronous: bool = False):
    if asynchronous:  # kombu already keeps these (Channel.client, Channel.subclient)
        return _original(self, asynchronous=True)
    client = self.__dict__.get("_orderrelay_client")
    if client is None or client.connection_pool is not self.pool:
        client = self._orderrelay_client = _original(self)
    return client


def reuse_redis_clients() -> None:
    """Make kombu's Redis channels keep their client (idempotent)."""
    kombu_redis.Channel._create_client = _create_client
