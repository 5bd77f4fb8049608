"""A real worker fed the worst inputs known, and messages Celery itself cannot make a task of: each one ends as a
rejected order, and the worker answers a ping throughout."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import pytest
import redis
from kombu import Connection, Producer

from orderrelay.foundation.constants import TASK_SUBMIT, Status
from orderrelay.sandbox.samples import extend_order
from orderrelay.tools import processes
from orderrelay.tools.fuzz import nested, samples
from tests.conftest import started, wait_until

pytestmark = pytest.mark.e2e


def raw_message(broker_url: str, body: bytes, content_type: str = "application/json") -> str:
    """A job message as any producer could put it on the queue, Celery's protocol 2 headers and all."""
    task_id = str(uuid.uuid4())
    headers = {"lang": "py", "task": TASK_SUBMIT, "id": task_id, "root_id": task_id, "parent_id": None}
    headers |= {"group": None, "retries": 0, "eta": None, "expires": None, "timelimit": [None, None]}
    with Connection(broker_url) as conn:
        Producer(conn).publish(
            body, routing_key="orders", content_type=content_type, content_encoding="utf-8", headers=headers
        )
    return task_id


def test_the_worst_inputs_are_each_recorded_as_rejected_while_the_worker_answers_pings(service_env, logs, db, sandbox):
    from orderrelay.worker.app import app

    redis.Redis.from_url(service_env["ORDERRELAY_BROKER_URL"]).flushdb()
    chaiz = samples()["chaiz"]
    city = {**chaiz, "userDetails": {**chaiz["userDetails"], "city": "a" + "-a" * 27 + "1"}}
    jobs = {
        "surrogate in a valid order": {"provider": "extend", "order": extend_order("t-w1", analytics={"u": "\ud800"})},
        "NUL in a key": {"provider": "extend", "order": extend_order("t-w2", analytics={"a\x00b": 1})},
        "deep nesting": {"provider": "extend", "order": extend_order("t-w3", analytics=nested(900))},
        "the backtracking city": {"provider": "chaiz", "order": city},
        "a keyword named self": {"provider": "extend", "order": extend_order("t-w4"), "self": 1},
    }
    bodies = {
        "a body that is not JSON": b"{not json",
        "a body nested past any parser": b"[" * 5000 + b"]" * 5000,
        "a body of the wrong shape": b"[1, 2]",
        "kwargs that are not a mapping": b'[[], "kwargs", {}]',
    }
    name = f"hostile-{uuid.uuid4().hex[:6]}"
    with started(processes.worker(service_env, logs, name=name, concurrency=4)) as worker:
        node = f"{name}-{os.getpid()}@{socket.gethostname()}"  # as processes.worker names it
        pings, stop = [], threading.Event()

        def ping():
            while not stop.is_set():
                replies = app.control.ping(destination=[node], timeout=3)
                pings.append(bool(replies))
                time.sleep(0.2)

        pinger = threading.Thread(target=ping, daemon=True)
        pinger.start()
        ids = {what: app.send_task(TASK_SUBMIT, kwargs=job, kwargsrepr="{...}").id for what, job in jobs.items()}
        ids |= {what: raw_message(service_env["ORDERRELAY_BROKER_URL"], body) for what, body in bodies.items()}
        control = app.send_task(TASK_SUBMIT, kwargs={"provider": "extend", "order": extend_order("t-ok")}).id

        def rows():
            found = db.execute("SELECT message_id, status, errors FROM orders").fetchall()
            return {r["message_id"]: r for r in found}

        wait_until(lambda: set(ids.values()) | {control} <= set(rows()), 60, message="a row for every job")
        wait_until(lambda: len(pings) >= 5, 30, message="pings while the worker works")
        stop.set()
        pinger.join()
        assert worker.alive()
    recorded = rows()
    assert {what: recorded[task_id]["status"] for what, task_id in ids.items()} == dict.fromkeys(ids, Status.REJECTED)
    assert all(recorded[task_id]["errors"] for task_id in ids.values())
    assert recorded[control]["status"] == Status.PLACED  # and the one good job among them was placed
    assert pings and all(pings), f"{pings.count(False)} of {len(pings)} pings unanswered"
    assert json.dumps(recorded[ids["surrogate in a valid order"]]["errors"]) == json.dumps(
        {"order.analytics.u": ["Must not hold a lone UTF-16 surrogate (it is not valid Unicode)."]}
    )


def test_the_fuzzer_finds_no_crash_no_5xx_and_no_job_without_a_row(service_env, tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in service_env.items() if not k.startswith("ORDERRELAY_")}
    broker = service_env["ORDERRELAY_BROKER_URL"].rsplit("/", 1)[0] + "/8"  # no worker listens there
    env.update(ORDERRELAY_BROKER_URL=broker, ORDERRELAY_DATABASE_URL=service_env["ORDERRELAY_DATABASE_URL"])
    out = tmp_path / "fuzz.json"
    result = subprocess.run(
        [sys.executable, "-m", "orderrelay.cli", "fuzz", "--cases", "2500", "--seed", "7", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    report = json.loads(out.read_text())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert report["cases"] == 2500
    assert (report["crashes"], report["api_5xx"], report["without_row"]) == ({}, 0, 0)
    assert report["rejected"] + report["accepted"] + report["unsendable"] == 2500
    assert sum(report["api_answers"].values()) == report["rejected"] + report["accepted"]
