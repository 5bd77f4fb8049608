"""Fail fast and clearly: a worker whose database or broker is wrong at start-up says so in one line and exits
non-zero; every CLI command turns a service that is away into one line and exit status 1; servers say where they
listen only once they do; ``show`` takes the id ``list`` prints; ``submit`` checks the job before sending it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid

import pytest

from orderrelay.core import pipeline
from orderrelay.foundation.constants import Status
from orderrelay.sandbox.samples import extend_order
from orderrelay.tools import processes
from tests.helpers import run_cli

pytestmark = pytest.mark.e2e
NOWHERE_DB = "postgresql://postgres@127.0.0.1:1/nowhere"
NOWHERE_BROKER = "redis://127.0.0.1:1/0"


def cli(env, *args, stdin: str | None = None):
    return run_cli(env, *args, stdin=stdin, timeout=60)


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert all(word in lines[0] for word in words), lines[0]


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [("ORDERRELAY_DATABASE_URL", NOWHERE_DB, "PostgreSQL"), ("ORDERRELAY_BROKER_URL", NOWHERE_BROKER, "the broker")],
)
def test_a_worker_with_a_wrong_service_says_so_in_one_line_and_exits(service_env, logs, setting, value, says):
    env = {**service_env, setting: value}
    started = time.monotonic()
    proc = processes.worker(env, logs, name=f"wrong-{says.split()[-1].lower()}", concurrency=2, wait=False)
    try:
        code = proc.popen.wait(timeout=60)
    finally:
        proc.stop()
    took = time.monotonic() - started
    log = proc.log()
    assert code != 0, log[-2000:]
    assert f"orderrelay worker cannot start: {says}" in log, log[-2000:]
    assert "orderrelay worker ready" not in log and "Traceback" not in log, log[-2000:]
    assert took < 45, took


@pytest.mark.parametrize(
    ("args", "setting", "value", "says"),
    [
        (("migrate",), "ORDERRELAY_DATABASE_URL", NOWHERE_DB, "PostgreSQL"),
        (("list",), "ORDERRELAY_DATABASE_URL", NOWHERE_DB, "PostgreSQL"),
        (("show", "865acf50"), "ORDERRELAY_DATABASE_URL", NOWHERE_DB, "PostgreSQL"),
        (("status",), "ORDERRELAY_DATABASE_URL", NOWHERE_DB, "PostgreSQL"),
        (("submit", "extend", "-"), "ORDERRELAY_BROKER_URL", NOWHERE_BROKER, "broker"),
    ],
)
def test_a_cli_command_with_a_service_away_prints_one_line(service_env, args, setting, value, says):
    body = json.dumps(extend_order(f"away-{uuid.uuid4().hex[:6]}")) if args[0] == "submit" else None
    one_line_error(cli({**service_env, setting: value}, *args, stdin=body), says)


def test_migrate_needs_only_the_database(service_env, database_url):
    env = {k: v for k, v in service_env.items() if not k.startswith("ORDERRELAY_")}
    env["ORDERRELAY_DATABASE_URL"] = database_url
    result = cli(env, "migrate")
    assert result.returncode == 0, result.stderr
    assert "schema up to date" in result.stdout


def test_a_server_on_a_busy_port_says_so_before_any_url(service_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli(service_env, "sandbox", "--port", str(port))
    one_line_error(result, "cannot listen")
    assert "http://" not in result.stdout


def test_the_api_without_keys_says_so_before_any_url(service_env):
    env = {k: v for k, v in service_env.items() if k != "ORDERRELAY_API_KEYS"}
    result = cli(env, "api", "--port", "1")
    assert result.returncode != 0 and "ORDERRELAY_API_KEYS" in result.stderr, result.stderr
    assert "http://" not in result.stdout and "Traceback" not in result.stderr


def test_show_takes_the_id_that_list_prints(runtime, db, sandbox, service_env):
    step = pipeline.intake(
        runtime,
        {"provider": "extend", "order": extend_order("prefix-1"), "idempotency_key": "p-1"},
        message_id=str(uuid.uuid4()),
    )
    assert pipeline.place(runtime, step.order_id).status == Status.PLACED
    listed = cli(service_env, "list")
    prefix = str(step.order_id)[:8]
    assert prefix in listed.stdout, listed.stdout
    shown = cli(service_env, "show", prefix, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == str(step.order_id)
    one_line_error(cli(service_env, "show", "zz"), "not an order id")
    one_line_error(cli(service_env, "show", "0" if not str(step.order_id).startswith("0") else "1"), "no order")


def test_submit_checks_the_job_first_and_sends_nothing_bad(service_env, db):
    bad = extend_order("bad-cli", currency="XXY")
    result = cli(service_env, "submit", "extend", "-", "--key", "bad-cli", stdin=json.dumps(bad))
    assert result.returncode == 1, result.stdout
    assert "order.currency" in result.stderr and "not sent" in result.stderr, result.stderr
    late = cli(service_env, "submit", "extend", "-", "--not-before", "tomorrow", stdin=json.dumps(extend_order("nb")))
    assert late.returncode == 1 and "not_before" in late.stderr, late.stderr
    webhook = cli(
        service_env,
        "submit",
        "extend",
        "-",
        "--notify",
        "https://169.254.169.254/x",
        stdin=json.dumps(extend_order("hook")),
    )
    assert webhook.returncode == 1 and "notify.url" in webhook.stderr, webhook.stderr
    time.sleep(1)
    assert db.execute("SELECT count(*) AS n FROM orders").fetchone()["n"] == 0  # nothing was sent
