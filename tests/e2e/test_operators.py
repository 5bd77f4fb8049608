"""What operators see leaks nothing: Flower's API and task pages, every table, every Redis key, the logs, the CLI."""

from __future__ import annotations

import base64
import json
import urllib.request

import pytest
import redis

from orderrelay import embedded, processes
from orderrelay.constants import ALL_QUEUES, Status
from sandbox.samples import TEST_CARD, chaiz_order
from tests.conftest import started, wait_until
from tests.e2e.test_worker import run_cli

pytestmark = pytest.mark.e2e
CVC = "80417"
EMAIL = "ada.secret@example.com"
SECRETS = (TEST_CARD, f"'{CVC}'", f'"{CVC}"', EMAIL)
FLOWER_AUTH = "ops:flower-password"


@pytest.fixture(scope="module")
def stack(service_env, logs):
    env = {**service_env, "FLOWER_BASIC_AUTH": FLOWER_AUTH}
    env["ORDERRELAY_BROKER_URL"] = env["ORDERRELAY_BROKER_URL"].rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(env["ORDERRELAY_BROKER_URL"]).flushdb()
    port = embedded.free_port()
    with (
        started(processes.worker(env, logs, name="ops-worker", concurrency=8)) as worker,
        started(processes.flower(env, port, logs)) as flower,
    ):
        yield env, f"http://127.0.0.1:{port}", worker, flower


def secret_order(sandbox) -> dict:
    plan = sandbox.admin("chaiz/plans", {})
    order = chaiz_order(plan["searchResultPlanId"])
    order["payment"]["cvc"] = CVC
    order["userDetails"]["email"] = EMAIL
    return order


def flower_get(url: str) -> str:
    token = base64.b64encode(FLOWER_AUTH.encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.read().decode()


def cli(env, *args, stdin=None) -> str:
    result = run_cli(env, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def run_orders(env, sandbox, db) -> list[str]:
    """Two Chaiz orders with card data: one through the CLI, one through the Python producer."""
    from celery import Celery

    from orderrelay.producer import send
    from orderrelay.vault import Vault

    cli(env, "submit", "chaiz", "-", "--key", "ops-cli", stdin=json.dumps(secret_order(sandbox)))
    app = Celery(broker=env["ORDERRELAY_BROKER_URL"], set_as_current=False)
    send(app, Vault(env["ORDERRELAY_FERNET_KEYS"].split(",")), "chaiz", secret_order(sandbox), idempotency_key="ops-py")
    keys = ["ops-cli", "ops-py"]
    for key in keys:
        wait_until(
            lambda k=key: (
                (db.execute("SELECT status FROM orders WHERE idempotency_key = %s", [k]).fetchone() or {}).get("status")
                == Status.PLACED
            ),
            30,
            message=f"{key} placed",
        )
    return keys


def test_flower_shows_every_task_and_no_card_data(stack, db, sandbox):
    env, flower_url, _, _ = stack
    run_orders(env, sandbox, db)
    tasks = json.loads(
        wait_until(
            lambda: (
                (text := flower_get(f"{flower_url}/api/tasks"))
                and sum(
                    1 for t in json.loads(text).values() if t["name"] == "orders.submit" and t["state"] == "SUCCESS"
                )
                >= 2
                and text
            ),
            30,
            message="Flower to see both submits",
        )
    )
    pages = [flower_get(f"{flower_url}/task/{task_id}") for task_id in tasks]
    dump = json.dumps(tasks) + "".join(pages) + flower_get(f"{flower_url}/tasks") + flower_get(f"{flower_url}/metrics")
    for secret in SECRETS:
        assert secret not in dump
    submits = [t for t in tasks.values() if t["name"] == "orders.submit"]
    assert {t["kwargs"] for t in submits} == {
        "{'provider': 'chaiz', 'idempotency_key': 'ops-cli'}",
        "{'provider': 'chaiz', 'idempotency_key': 'ops-py'}",
    }
    assert all(t["worker"] and t["runtime"] is not None for t in submits)


def test_nothing_the_system_wrote_holds_card_data_in_clear(stack, db, sandbox, database_url):
    env, _, worker, flower = stack
    keys = run_orders(env, sandbox, db)
    written = []
    for table in [r["tablename"] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]:
        written += [json.dumps(r, default=str) for r in db.execute(f'SELECT row_to_json(t) AS r FROM "{table}" t')]  # noqa: S608
    broker = redis.Redis.from_url(env["ORDERRELAY_BROKER_URL"])
    for key in broker.keys("*"):
        kind = broker.type(key).decode()
        value = {
            "string": lambda k: broker.get(k),
            "list": lambda k: broker.lrange(k, 0, -1),
            "hash": lambda k: broker.hgetall(k),
            "set": lambda k: broker.smembers(k),
            "zset": lambda k: broker.zrange(k, 0, -1),
        }.get(kind, lambda k: b"")(key)
        written.append(repr(value))
    written += [worker.log(), flower.log()]
    for key in keys:
        written.append(cli(env, "show", "--key", key))
        written.append(cli(env, "show", "--key", key, "--json"))
    written += [cli(env, "list"), cli(env, "list", "--json"), cli(env, "status")]
    everything = "\n".join(written)
    for secret in SECRETS[:3]:  # the e-mail address is the customer's, kept with the order (not card data)
        assert secret not in everything, secret
    assert "**** 1111" in everything


def test_status_shows_queues_workers_orders_and_failures(stack, db, sandbox):
    env, _, _, _ = stack
    run_orders(env, sandbox, db)
    view = json.loads(cli(env, "status", "--json"))
    assert set(view["queues"]) == set(ALL_QUEUES)
    assert any(name.startswith("ops-worker") for name in view["workers"])
    assert {"provider": "chaiz", "status": "placed", "n": 2}.items() <= {
        k: v for row in view["orders"] if row["provider"] == "chaiz" for k, v in row.items()
    }.items()
    assert view["recent_failures"] == []
