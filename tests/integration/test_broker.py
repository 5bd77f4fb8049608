"""kombu's Redis channels keep one client (orderrelay.broker), against a real Redis."""

from __future__ import annotations

import pytest
from kombu import Connection, Exchange, Queue

from orderrelay.broker import reuse_redis_clients

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
