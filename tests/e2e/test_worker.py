"""Real ``celery worker`` and ``celery beat`` processes, the real Redis and PostgreSQL, the sandbox over HTTP."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from orderrelay.foundation.constants import TASK_SUBMIT, Status
from orderrelay.sandbox.samples import extend_order as sample_order
from orderrelay.tools import processes
from tests.conftest import started, wait_until
from tests.helpers import provider_order, ref_field, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def worker(service_env, logs):
    import redis

    # No job an earlier module left on the shared broker (a message a stopped worker held, restored after the
    # visibility timeout; a producer's note of a job whose row a test's truncation removed) reaches these tests.
    redis.Redis.from_url(service_env["ORDERRELAY_BROKER_URL"]).flushdb()
    with started(processes.worker(service_env, logs, name="e2e-worker", concurrency=16)) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()[-3000:]


@pytest.fixture(scope="module")
def celery_app(service_env):
    from orderrelay.worker.app import app

    return app


def submit(app, task_id: str | None = None, **job) -> str:
    return app.send_task(TASK_SUBMIT, kwargs=job, kwargsrepr="{...}", task_id=task_id).id


def processed(worker, task_id: str, broker_url: str) -> None:
    # Up to the visibility timeout (30 s) and then some: a message another process took as it stopped comes back
    # only then. What these tests assert is what the task did, not how soon.
    try:
        wait_until(lambda: f"{task_id}] succeeded" in worker.log(), 75, message=f"task {task_id} to finish")
    except pytest.fail.Exception:
        pytest.fail(explain(worker, task_id, broker_url), pytrace=False)


def explain(worker, task_id: str, broker_url: str) -> str:
    """Why a task did not finish: its lines in the worker's log, the log's end, and where the broker has it."""
    import redis

    from orderrelay.core.broker import reserved
    from orderrelay.core.pending import unacked_headers

    log = worker.log()
    mine = [line for line in log.splitlines() if task_id in line]
    client = redis.Redis.from_url(broker_url)
    queues = {key.decode(): client.llen(key) for key in client.scan_iter("orders*") if client.type(key) == b"list"}
    held = [headers.get("id") for headers in unacked_headers(client)]
    return (
        f"task {task_id} did not finish in 75 s (worker alive: {worker.alive()})\n"
        f"its log lines: {mine}\nqueues: {queues}\nheld unacknowledged: {held} {reserved(broker_url)}\n"
        f"the worker's log ends:\n{log[-3000:]}"
    )


def final(db, key: str, timeout: float = 30.0) -> dict:
    def settled():
        row = db.execute("SELECT * FROM orders WHERE idempotency_key = %s", [key]).fetchone()
        finals = (Status.PLACED, Status.FAILED, Status.REJECTED, Status.IN_DOUBT)
        return row if row and row["status"] in finals else None

    return wait_until(settled, timeout, message=f"order {key} to settle")


def count(db, table: str, order_id) -> int:
    return db.execute(f"SELECT count(*) AS n FROM {table} WHERE order_id = %s", [order_id]).fetchone()["n"]  # noqa: S608


def test_a_worker_places_an_extend_order_once(worker, celery_app, db, sandbox):
    submit(celery_app, provider="extend", order=sample_order("e2e-1"), idempotency_key="e2e-1")
    row = final(db, "e2e-1")
    assert row["status"] == Status.PLACED
    assert count(db, "attempts", row["id"]) == 1
    made = sandbox.orders()
    assert made["count"] == 1
    assert made["orders"][0]["id"] == row["provider_ref"]
    log = worker.log()
    assert log.index("runtime ready") < log.index("ready.") < log.index("Task orders.submit")  # made at start-up


def test_the_same_key_twice_makes_no_second_order(worker, celery_app, service_env, db, sandbox):
    order = sample_order("e2e-2")
    submit(celery_app, provider="extend", order=order, idempotency_key="e2e-2")
    first = final(db, "e2e-2")
    # Task ids with card-shaped groups (one random id in 45 has them): the worker's log names them whole.
    for task_id in (
        f"4b52d5fd-5758-4783-8863-{uuid.uuid4().hex[:12]}",
        f"{uuid.uuid4().hex[:8]}-1234-5678-9012-345678901234",
    ):
        submit(celery_app, task_id=task_id, provider="extend", order=order, idempotency_key="e2e-2")
        processed(worker, task_id, service_env["ORDERRELAY_BROKER_URL"])
    assert db.execute("SELECT count(*) AS n FROM orders WHERE idempotency_key = 'e2e-2'").fetchone()["n"] == 1
    assert count(db, "attempts", first["id"]) == 1
    assert sandbox.orders()["count"] == 1


def test_bad_jobs_are_rejected_with_field_errors_and_the_worker_lives_on(worker, celery_app, db, sandbox):
    bad = sample_order("e2e-bad", total=-1)
    submit(celery_app, provider="extend", order=bad, idempotency_key="e2e-bad")
    submit(celery_app, provider="acme", order={}, idempotency_key="e2e-acme")
    submit(celery_app, provider="extend", order="not a dict", idempotency_key="e2e-str", colour="red")
    celery_app.send_task(TASK_SUBMIT, args=["extend", {}], kwargs={"idempotency_key": "e2e-args"})
    assert final(db, "e2e-bad")["errors"] == {
        "order.total": ["Must be greater than or equal to 0 and less than or equal to 9007199254740991."]
    }
    assert "provider" in final(db, "e2e-acme")["errors"]
    assert {"order", "colour"} <= set(final(db, "e2e-str")["errors"])
    assert "_positional_arguments" in final(db, "e2e-args")["errors"]
    submit(celery_app, provider="extend", order=sample_order("e2e-ok"), idempotency_key="e2e-ok")
    assert final(db, "e2e-ok")["status"] == Status.PLACED
    assert sandbox.orders()["count"] == 1


def test_a_fractional_day_wait_is_honoured(worker, celery_app, db, sandbox):
    wait_days = 2 / 86400
    submit(
        celery_app,
        provider="extend",
        order=sample_order("e2e-wait", transactionDelay=wait_days),
        idempotency_key="e2e-wait",
    )
    row = final(db, "e2e-wait")
    assert row["status"] == Status.PLACED
    assert (row["placed_at"] - row["created_at"]).total_seconds() >= 2.0
    assert "transactionDelay" not in sandbox.orders()["orders"][0]


def test_retryable_faults_are_retried_to_placement_with_one_key(worker, celery_app, db, sandbox):
    sandbox.script(script=[503, {"status": 429, "retry_after": 0.3}, 200])
    submit(celery_app, provider="extend", order=sample_order("e2e-retry"), idempotency_key="e2e-retry")
    row = final(db, "e2e-retry")
    attempts = db.execute(
        "SELECT outcome, idempotency_key FROM attempts WHERE order_id = %s ORDER BY number", [row["id"]]
    ).fetchall()
    assert row["status"] == Status.PLACED
    assert [a["outcome"] for a in attempts] == ["retryable", "retryable", "placed"]
    assert len({a["idempotency_key"] for a in attempts}) == 1
    assert sandbox.orders()["count"] == 1


def test_work_whose_message_was_lost_is_found_by_beat_and_placed(worker, service_env, logs, db, sandbox):
    from orderrelay.store import orders as store
    from tests.integration.test_pipeline import job

    with db.transaction():
        row = store.insert_order(  # as if Redis lost the message after intake
            db,
            provider="extend",
            status=Status.QUEUED,
            request=job()["order"],
            request_hash="h",
            idempotency_key="e2e-lost",
            message_id=None,
            due_at=None,
            expected_at=None,
            reason="received",
        )
        db.execute("UPDATE orders SET due_at = now() WHERE id = %s", [row["id"]])
    with started(processes.beat(service_env, logs)):
        assert final(db, "e2e-lost")["status"] == Status.PLACED
    assert sandbox.orders()["count"] == 1


def test_cli_submit_show_and_list(worker, service_env, db, sandbox):
    body = json.dumps(sample_order("e2e-cli"))
    submitted = run_cli(service_env, "submit", "extend", "-", "--key", "e2e-cli", stdin=body)
    assert submitted.returncode == 0, submitted.stderr
    final(db, "e2e-cli")
    shown = run_cli(service_env, "show", "--key", "e2e-cli", "--json")
    order = json.loads(shown.stdout)
    assert order["status"] == Status.PLACED
    assert [e["to_status"] for e in order["events"]] == ["queued", "placing", "placed"]
    assert order["attempts"][0]["outcome"] == "placed"
    listed = json.loads(run_cli(service_env, "list", "--status", "placed", "--json").stdout)
    assert [o["idempotency_key"] for o in listed] == ["e2e-cli"]
    missing = run_cli(service_env, "show", str(uuid.uuid4()))
    assert missing.returncode == 1
    assert "no order" in missing.stderr


def test_the_demo_passes_on_these_services(service_env, logs):
    # The demo runs its own worker against its own sandbox: give it a Redis database of its own, so the
    # tests' worker (listening on the same queue name) does not take its messages.
    broker = service_env["ORDERRELAY_BROKER_URL"].rsplit("/", 1)[0] + "/14"
    env = {k: v for k, v in service_env.items() if not k.startswith("ORDERRELAY_")}
    env.update(ORDERRELAY_BROKER_URL=broker, ORDERRELAY_DATABASE_URL=service_env["ORDERRELAY_DATABASE_URL"])
    result = run_cli(env, "demo", "--timeout", "60")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "demo passed" in result.stdout


@pytest.mark.parametrize("provider", ["chaiz", "adobe_vip", "battleface", "webroot"])
def test_a_worker_places_a_valid_order(provider, worker, celery_app, db, sandbox):
    key = f"e2e-{provider}"
    submit(celery_app, provider=provider, order=provider_order(sandbox, provider), idempotency_key=key)
    row = final(db, key)
    made = sandbox.orders(provider)
    assert row["status"] == Status.PLACED
    assert count(db, "attempts", row["id"]) == 1
    assert made["count"] == 1
    assert row["provider_ref"] == str(made["orders"][0][ref_field(provider)])


@pytest.mark.parametrize(
    ("provider", "spoil", "code"),
    [
        ("chaiz", lambda o: o.update(searchResultPlanIds=[424242]), "4020 PlanNotFound"),
        ("adobe_vip", lambda o: o["lineItems"][0].update(offerId="NO-SUCH-OFFER"), "2122"),
        ("battleface", lambda o: o.update(premium=99), None),
        ("webroot", lambda o: o.update(VendorOrderCode="MSP-UNKNOWN"), "CartNotFound"),
    ],
)
def test_a_provider_4xx_fails_with_its_code_and_is_not_retried(provider, spoil, code, worker, celery_app, db, sandbox):
    order = provider_order(sandbox, provider)
    spoil(order)
    key = f"e2e-4xx-{provider}"
    submit(celery_app, provider=provider, order=order, idempotency_key=key)
    row = final(db, key)
    assert row["status"] == Status.FAILED
    assert row["last_error"].get("code") == code
    assert row["last_error"]["message"]  # the provider's own words are kept
    assert count(db, "attempts", row["id"]) == 1
    assert sandbox.orders(provider)["create_requests"] == 1


@pytest.mark.parametrize(
    ("provider", "status"),
    [
        ("chaiz", Status.IN_DOUBT),
        ("adobe_vip", Status.PLACED),
        ("battleface", Status.IN_DOUBT),
        ("webroot", Status.PLACED),
    ],
)
def test_a_connection_dropped_after_create(provider, status, worker, celery_app, db, sandbox):
    sandbox.script(provider, script=["drop_after_create"])
    key = f"e2e-drop-{provider}"
    submit(celery_app, provider=provider, order=provider_order(sandbox, provider), idempotency_key=key)
    row = final(db, key)
    assert row["status"] == status
    assert sandbox.orders(provider)["count"] == 1


def test_a_short_fault_drill_loses_doubles_and_contradicts_nothing(tmp_path):
    # The drill starts its own Redis and PostgreSQL (it kills and restarts them), its own sandbox and workers.
    out = tmp_path / "drill.json"
    result = run_cli(
        dict(os.environ),
        *("chaos", "--orders", "250", "--kills", "5", "--freezes", "1", "--seed", "3", "--timeout", "240"),
        *("--out", str(out)),
    )
    report = json.loads(out.read_text())
    assert result.returncode == 0, result.stdout[-3000:]
    assert report["passed"] is True
    assert report["lost_before_intake"].get("always", []) == []
    assert not any(report["lost_after_intake"].values()) and report["contradictions"] == []
    assert set(report["duplicates"].values()) == {0}
    assert (report["worker_kills"], report["worker_freezes"], report["redis_flushes"]) == (5, 1, 1)
    assert report["redis_restarts"] == {"always": 1, "everysec": 1}
    assert report["postgres_restarts"] == 1
    assert report["not_delivered"] == []
    assert sum(report["end_states"].values()) + sum(map(len, report["lost_before_intake"].values())) == 250


def test_a_wait_survives_a_redis_flush_and_a_worker_restart(worker, celery_app, service_env, logs, db, sandbox):
    import redis

    submit(
        celery_app,
        provider="extend",
        order=sample_order("e2e-durable", transactionDelay=3 / 86400),
        idempotency_key="e2e-durable",
    )
    wait_until(lambda: db.execute("SELECT 1 FROM orders WHERE idempotency_key = 'e2e-durable'").fetchone(), 10)
    redis.Redis.from_url(service_env["ORDERRELAY_BROKER_URL"]).flushdb()  # the countdown message is gone
    worker.popen.kill()
    worker.popen.wait()
    with (
        started(processes.worker(service_env, logs, name="e2e-worker-2", concurrency=8)),
        started(processes.beat(service_env, logs)),
    ):
        row = final(db, "e2e-durable", timeout=40)
    assert row["status"] == Status.PLACED
    assert (row["placed_at"] - row["created_at"]).total_seconds() >= 3
    assert sandbox.orders()["count"] == 1


def test_the_benchmark_runs_and_writes_its_figures(service_env, tmp_path):
    # It measures; it asserts no speed (figures live in the README). Here: it runs, checks exactly-once, writes.
    broker = service_env["ORDERRELAY_BROKER_URL"].rsplit("/", 1)[0] + "/9"
    env = {k: v for k, v in service_env.items() if not k.startswith("ORDERRELAY_")}
    env.update(ORDERRELAY_BROKER_URL=broker, ORDERRELAY_DATABASE_URL=service_env["ORDERRELAY_DATABASE_URL"])
    result = run_cli(
        env, "bench", "--orders", "30", "--naive-orders", "10", "--concurrency", "16", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (written,) = tmp_path.glob("bench-*.json")
    figures = json.loads(written.read_text())
    assert [r["name"] for r in figures["runs"]] == [
        "bare Celery no-op",
        "orderrelay, provider at 0 ms",
        "orderrelay, provider at 50 ms",
        "orderrelay, provider at 200 ms",
        "orderrelay at half that peak rate, provider at 200 ms",
        "one worker, provider at 1000 ms (calls in flight)",
        "naive, provider at 200 ms",
    ]
    assert all(r["per_second"] > 0 for r in figures["runs"])
    measured = [r for r in figures["runs"] if r["name"] != "bare Celery no-op"]
    assert all(r["p99_ms"] >= r["p50_ms"] > 0 and r["cpu_ms_per_order"] > 0 for r in measured)
    assert all(r["peak_rss_mb"] > 0 and r["in_flight_peak"] >= 1 for r in measured)
    assert len(figures["ratios"]) == 4
