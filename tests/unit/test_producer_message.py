"""What ``orderrelay submit`` puts on the broker: the task by name, the job as kwargs, no order in kwargsrepr.

A fast unit test: the broker is fakeredis, patched into kombu's Redis transport.
"""

from __future__ import annotations

import base64
import json

import fakeredis
import pytest
from click.testing import CliRunner

from orderrelay.sandbox.samples import extend_order as sample_order


@pytest.fixture
def fake_broker(monkeypatch):
    from cryptography.fernet import Fernet
    from kombu.transport import redis as kombu_redis

    from orderrelay.config.settings import get_settings

    server = fakeredis.FakeServer()
    monkeypatch.setattr(
        kombu_redis.Channel, "_create_client", lambda self, asynchronous=False: fakeredis.FakeRedis(server=server)
    )
    for name, value in {
        "ORDERRELAY_BROKER_URL": "redis://127.0.0.1:6399/0",
        "ORDERRELAY_DATABASE_URL": "postgresql://postgres@127.0.0.1/x",
        "ORDERRELAY_FERNET_KEYS": Fernet.generate_key().decode(),
        "ORDERRELAY_EXTEND_CLIENT_ID": "i",
        "ORDERRELAY_EXTEND_CLIENT_SECRET": "s",
        "ORDERRELAY_PROVIDERS": "extend,chaiz",
        "ORDERRELAY_CHAIZ_TOKEN": "t",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    from orderrelay.worker.app import app

    app.close()  # drop pooled broker connections made by earlier tests: this test's messages go to fakeredis
    yield fakeredis.FakeRedis(server=server)
    app.close()
    get_settings.cache_clear()


def test_submit_sends_orders_submit_with_the_job_and_a_redacted_repr(fake_broker, tmp_path):
    from orderrelay.cli import main

    path = tmp_path / "order.json"
    order = sample_order("p-1")
    path.write_text(json.dumps(order))
    result = CliRunner().invoke(main, ["submit", "extend", str(path), "--key", "k-9"])
    assert result.exit_code == 0, result.output
    (raw,) = fake_broker.lrange("orders", 0, -1)
    message = json.loads(raw)
    headers = message["headers"]
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert headers["task"] == "orders.submit"
    assert args == []
    assert kwargs == {"provider": "extend", "order": order, "idempotency_key": "k-9"}
    assert "Ada Lovelace" not in headers["kwargsrepr"]
    assert "ada@example.com" not in headers["kwargsrepr"]
    # noted beside the message, under its id, until a worker has taken it in (orderrelay.core.pending)
    (noted,) = fake_broker.hgetall("orderrelay:jobs-not-taken-in").items()
    assert noted[0].decode() == headers["id"] and json.loads(noted[1])["kwargs"] == kwargs


def test_submit_refuses_a_file_that_is_not_json(fake_broker, tmp_path):
    from orderrelay.cli import main

    path = tmp_path / "order.json"
    path.write_text("{not json")
    result = CliRunner().invoke(main, ["submit", "extend", str(path)])
    assert result.exit_code == 1
    assert "is not JSON" in result.output
    assert fake_broker.llen("orders") == 0


def test_card_fields_leave_the_process_sealed(fake_broker, tmp_path):
    from orderrelay.cli import main
    from orderrelay.sandbox.samples import TEST_CARD, chaiz_order

    path = tmp_path / "order.json"
    path.write_text(json.dumps(chaiz_order(100)))
    result = CliRunner().invoke(main, ["submit", "chaiz", str(path), "--key", "k-card"])
    assert result.exit_code == 0, result.output
    (raw,) = fake_broker.lrange("orders", 0, -1)
    assert TEST_CARD.encode() not in raw
    (noted,) = fake_broker.hvals("orderrelay:jobs-not-taken-in")
    assert TEST_CARD.encode() not in noted and b'"123"' not in noted
    assert b'"123"' not in base64.b64decode(json.loads(raw)["body"])
    _, kwargs, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
    assert kwargs["order"]["payment"]["accountNumber"]["last4"] == "1111"
    assert "$sealed" in kwargs["order"]["payment"]["cvc"]


@pytest.mark.parametrize("key", [b"cart-1", ["cart-1"], 2026120412345678])
def test_a_key_the_producer_cannot_take_raises_before_anything_is_published(fake_broker, key):
    from orderrelay.producer import submit_order

    with pytest.raises(TypeError, match="nothing was sent"):
        submit_order("extend", sample_order("t-key"), idempotency_key=key)
    assert fake_broker.llen("orders") == 0
