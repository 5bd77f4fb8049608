"""kombu's Redis channels keep one client (orderrelay.core.broker), against a real Redis."""

from __future__ import annotations

import pytest
from kombu import Connection, Exchange, Queue

from orderrelay.core.broker import reuse_redis_clients

pytestmark = pytest.mark.integration


def test_a_channel_keeps_its_client_until_its_pool_is_replaced_and_messages_still_flow(broker_url):
    reuse_redis_clients()
    queue = Queue("orderrelay-test-broker", Exchange("orderrelay-test-broker"), "k")
    with Connection(broker_url) as conn, conn.channel() as channel:
        first = channel._create_client()
        assert channel._create_client() is first
        producer = conn.Producer(channel)
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="k", declare=[queue])
        received = []
        with conn.Consumer(queue, callbacks=[lambda body, message: (received.append(body["n"]), message.ack())]):
            while len(received) < 3:
                conn.drain_events(timeout=5)
        assert received == [0, 1, 2]
        assert channel._create_client() is first
        channel._disconnect_pools()  # what kombu does after a fork or a lost connection
        assert channel._create_client() is not first
        assert channel._create_client().connection_pool is channel.pool


def test_a_message_acknowledged_after_its_channel_closed_is_not_the_workers_end(broker_url):
    # A task that ran across a Redis restart is acknowledged on the channel kombu closed meanwhile (its
    # connection let go): kombu's own client-making fails there with an AttributeError, which Celery treats as
    # unrecoverable and the worker exits. With orderrelay's clients the ack goes through on the channel's last
    # client, or fails with a connection error that Celery logs and survives.
    import redis

    reuse_redis_clients()
    queue = Queue("orderrelay-test-late-ack", Exchange("orderrelay-test-late-ack"), "k")
    with Connection(broker_url) as conn:
        channel = conn.channel()
        conn.Producer(channel).publish({"n": 1}, exchange=queue.exchange, routing_key="k", declare=[queue])
        message = None
        while message is None:
            message = channel.basic_get(queue.name, no_ack=False)
        unacked = redis.Redis.from_url(broker_url)
        assert unacked.hexists("unacked", message.delivery_tag)
        channel.close()
        assert channel.connection is None
        message.ack()  # on the last client: the message is acknowledged after all
        assert not unacked.hexists("unacked", message.delivery_tag)
        fresh = conn.channel()
        fresh.close()
        with pytest.raises(redis.ConnectionError):  # never used: no client to give, and none made from nothing
            fresh._create_client()
        assert issubclass(redis.ConnectionError, conn.connection_errors)  # what Celery catches around an ack
