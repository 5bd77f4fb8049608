"""What operators see leaks nothing: Flower's API and task pages, every table, every Redis key, the logs, the CLI."""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request

import psycopg
import pytest
import redis

from orderrelay.config.settings import get_settings
from orderrelay.foundation.constants import Status
from orderrelay.sandbox.samples import TEST_CARD, chaiz_order
from orderrelay.tools import embedded, processes
from tests.conftest import started, wait_until
from tests.e2e.test_worker import run_cli

pytestmark = pytest.mark.e2e
CVC = "80417"
EMAIL = "ada.secret@example.com"
SECRETS = (TEST_CARD, f"'{CVC}'", f'"{CVC}"', EMAIL)
FLOWER_AUTH = "ops:flower-password"


@pytest.fixture(scope="module")
def stack(service_env, logs):
    env = {**service_env, "FLOWER_BASIC_AUTH": FLOWER_AUTH, "ORDERRELAY_LOG_FORMAT": "json"}
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

    from orderrelay.foundation.vault import Vault
    from orderrelay.producer import send

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
    assert set(view["queues"]) == set(get_settings().queues)
    assert any(name.startswith("ops-worker") for name in view["workers"])
    assert {"provider": "chaiz", "status": "placed", "n": 2}.items() <= {
        k: v for row in view["orders"] if row["provider"] == "chaiz" for k, v in row.items()
    }.items()
    assert view["recent_failures"] == []


def test_flower_never_listens_beyond_this_machine_without_its_password(service_env, logs):
    env = {k: v for k, v in service_env.items() if k != "FLOWER_BASIC_AUTH"}
    refused = run_cli(env, "flower", "--address", "0.0.0.0")  # noqa: S104 - that it is refused
    assert refused.returncode != 0
    assert "listens on 127.0.0.1 only" in refused.stderr
    weak = run_cli({**env, "FLOWER_BASIC_AUTH": "ops:short"}, "flower")
    assert weak.returncode != 0 and "12 or more characters" in weak.stderr
    port = embedded.free_port()
    proc = processes.Process(
        "flower-open", [sys.executable, "-m", "orderrelay.cli", "flower", "--port", str(port)], env, logs / "fo.log"
    )
    with started(proc):
        proc.wait_for("Visit me at", timeout=60)
        assert f"Visit me at http://127.0.0.1:{port}" in proc.log()


def test_flower_with_its_password_asks_for_it(stack):
    _, flower_url, _, _ = stack
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{flower_url}/tasks", timeout=10)
    assert info.value.code == 401


# What a customer's order holds that no event, log line or exception text may show.
PERSONAL = {
    "card number": TEST_CARD,
    "CVC": "80417",
    "e-mail": "quixote.bloom@example.org",
    "first name": "Zenobia",
    "last name": "Quixotebloom",
    "phone": "6175550142",
    "expiry": "11/2031",
}


def personal_order(sandbox) -> dict:
    plan = sandbox.admin("chaiz/plans", {})
    order = chaiz_order(plan["searchResultPlanId"])
    order["payment"].update(cvc=PERSONAL["CVC"], creditCardExpirationDateString=PERSONAL["expiry"])
    order["userDetails"].update(
        email=PERSONAL["e-mail"],
        firstName=PERSONAL["first name"],
        lastName=PERSONAL["last name"],
        phoneNumber=PERSONAL["phone"],
    )
    return order


def send_raw(app, sandbox, key: str) -> None:
    """As a producer that neither seals the card nor says what to show (Celery then shows every argument)."""
    job = {"provider": "chaiz", "order": personal_order(sandbox), "idempotency_key": key}
    app.send_task("orders.submit", kwargs=job, queue="orders")


def test_no_event_log_line_or_error_text_shows_personal_or_card_data(stack, db, sandbox, database_url):
    """A raw producer (no sealing, no kwargsrepr), a job whose intake is retried after a service error, an order
    left in doubt and one an operator resolved: Flower's events and the worker's JSON log show none of it."""
    from celery import Celery

    env, flower_url, worker, flower = stack
    raw = Celery(broker=env["ORDERRELAY_BROKER_URL"], set_as_current=False)  # Celery's own producer: it puts
    # the repr of every argument (the card included) in the message's headers when not told otherwise
    send_raw(raw, sandbox, "leak-raw")

    def status(key):
        row = db.execute("SELECT id, status FROM orders WHERE idempotency_key = %s", [key]).fetchone()
        return row and row["status"]

    # Placed before Postgres is made to refuse statements: an attempt whose outcome cannot be recorded keeps its
    # claim until the lease runs out (minutes), which is the lease's recovery, not what this test is about.
    wait_until(lambda: status("leak-raw") == Status.PLACED, 60, message="leak-raw placed")
    # A retried intake: Postgres refuses the worker's statements for a moment (a lock it cannot get in time).
    with psycopg.connect(database_url, autocommit=True) as admin:
        name = admin.execute("SELECT current_database() AS d").fetchone()[0]
        admin.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '200ms'")
        ours = db.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        admin.execute(  # the worker's connections: their replacements take the lock_timeout
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid NOT IN (pg_backend_pid(), %s)",
            [ours],
        )
        try:
            with psycopg.connect(database_url, application_name="pytest-lock") as locker:
                locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                send_raw(raw, sandbox, "leak-retried")
                wait_until(lambda: "Retry in" in worker.log(), 30, message="the intake to be retried")
        finally:
            admin.execute(f'ALTER DATABASE "{name}" RESET lock_timeout')

    wait_until(lambda: status("leak-retried") == Status.PLACED, 60, message="leak-retried placed")
    sandbox.script("chaiz", script=["drop_after_create", "drop_after_create"])
    send_raw(raw, sandbox, "leak-doubt")
    send_raw(raw, sandbox, "leak-resolved")
    for key in ("leak-doubt", "leak-resolved"):
        wait_until(lambda k=key: status(k) == Status.IN_DOUBT, 60, message=f"{key} in doubt")
    resolved = db.execute("SELECT id FROM orders WHERE idempotency_key = 'leak-resolved'").fetchone()["id"]
    cli(env, "resolve", str(resolved), "--failed", "--reason", "Chaiz support: no such order")
    tasks = json.loads(flower_get(f"{flower_url}/api/tasks"))
    retried = [t for t in tasks.values() if t["name"] == "orders.submit" and t.get("retries")]
    assert retried, "Flower saw the retried intake"
    seen = json.dumps(tasks) + "".join(flower_get(f"{flower_url}/task/{tid}") for tid in tasks)
    seen += flower_get(f"{flower_url}/tasks") + worker.log() + flower.log()
    leaked = {what: value for what, value in PERSONAL.items() if value in seen}
    assert leaked == {}, f"shown in Flower or the logs: {sorted(leaked)}"
    assert "'idempotency_key': 'leak-raw'" in seen  # what they do show of a job
