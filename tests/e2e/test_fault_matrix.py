"""The fault matrix: every provider x every answer a provider, its gateway or the worker's own fate can give.

Each cell is a real order placed over real HTTP with the sandbox scripted to fail in one way, against the real
Postgres; the sweep runs alongside, as beat runs it, so a lease that is not kept alive is taken away. The last two
rows run real worker processes (and beat) and SIGKILL or freeze (SIGSTOP) the worker mid-call.

After the order ends, every cell asserts the truth: the provider holds at most one order for it, and what Postgres
records is what the provider holds - ``placed`` with the provider's own reference when it holds the order and
orderrelay can know, ``in_doubt`` when it cannot, ``failed`` only when the provider certainly holds nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from orderrelay.core import pipeline
from orderrelay.foundation.constants import FINAL_STATUSES, TASK_SUBMIT, Status
from orderrelay.store import orders as store
from orderrelay.tools import processes
from tests.conftest import started, wait_until
from tests.helpers import provider_order, ref_field

pytestmark = pytest.mark.e2e

PROVIDERS = ("extend", "adobe_vip", "webroot", "chaiz", "battleface")
SLOW = 7.0  # seconds: longer than the tests' lease (ORDERRELAY_LEASE_SECONDS=5 in conftest)

# What the sandbox does to the create call (this one fault, then normal answers).
SCRIPTS = {
    "429": [{"status": 429, "retry_after": 0.05}],
    "503": [{"status": 503, "retry_after": 0.05}],
    "500, nothing made": [500],
    "502 after create": [{"status": 502, "after_create": True, "gateway": True}],
    "504 after create": [{"status": 504, "after_create": True, "gateway": True}],
    "500 after create, kept under the key": [{"status": 500, "after_create": True, "stored": True}],
    "dropped before create": ["drop"],
    "dropped after create": ["drop_after_create"],
    "answer slower than the lease": [{"after_create": True, "delay": SLOW}],
}
WORKER_FAULTS = ("worker SIGKILLed mid-call", "worker frozen past its lease, resumed")
# fault -> per provider: the end state, and how many orders the provider holds
MATRIX = {
    #                                         extend      adobe_vip     webroot     chaiz         battleface
    "429":                                   ("placed 1", "placed 1",   "placed 1", "placed 1",   "placed 1"),
    "503":                                   ("placed 1", "placed 1",   "placed 1", "placed 1",   "placed 1"),
    "500, nothing made":                     ("placed 1", "in_doubt 0", "placed 1", "in_doubt 0", "in_doubt 0"),
    "502 after create":                      ("placed 1", "placed 1",   "placed 1", "in_doubt 1", "in_doubt 1"),
    "504 after create":                      ("placed 1", "placed 1",   "placed 1", "in_doubt 1", "in_doubt 1"),
    "500 after create, kept under the key":  ("placed 1", "in_doubt 1", "placed 1", "in_doubt 1", "in_doubt 1"),
    "dropped before create":                 ("placed 1", "placed 1",   "placed 1", "in_doubt 0", "in_doubt 0"),
    "dropped after create":                  ("placed 1", "placed 1",   "placed 1", "in_doubt 1", "in_doubt 1"),
    "answer slower than the lease":          ("placed 1", "placed 1",   "placed 1", "placed 1",   "placed 1"),
    "worker SIGKILLed mid-call":             ("placed 1", "placed 1",   "placed 1", "in_doubt 1", "in_doubt 1"),
    "worker frozen past its lease, resumed": ("placed 1", "placed 1",   "placed 1", "placed 1",   "placed 1"),
}  # fmt: skip


def test_the_matrix_has_a_column_for_every_built_in_provider():
    """The expectations are written by hand, per provider: a provider added to the table needs its column here."""
    from orderrelay.providers import IDS

    assert sorted(PROVIDERS) == sorted(IDS)


def expected(fault: str) -> dict[str, str]:
    return dict(zip(PROVIDERS, MATRIX[fault], strict=True))


def cell(db, sandbox, provider: str, order_id) -> str:
    """The recorded status and the orders the provider holds; a placed order must carry the provider's own ref."""
    row = store.get_order(db, order_id)
    made = sandbox.orders(provider)
    if row["status"] == Status.PLACED:
        assert made["count"] == 1 and row["provider_ref"] == str(made["orders"][0][ref_field(provider)]), provider
    return f"{row['status']} {made['count']}"


@contextlib.contextmanager
def sweeping(runtime, every: float = 0.5):
    """The sweep, run alongside as beat runs it: it takes back any claim whose lease runs out."""
    stop = threading.Event()

    def sweep():
        while not stop.wait(every):
            pipeline.sweep(runtime)

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def settled(runtime, order_id) -> bool:
    with runtime.db.connection() as conn:
        return store.get_order(conn, order_id)["status"] in FINAL_STATUSES


def place_until_it_ends(runtime, provider: str, order: dict, timeout: float = 60.0):
    """Play a worker: take the job in (claiming it at once, as a worker does), place it, and place it again each
    time it falls due, until it ends."""
    job = {"provider": provider, "order": order, "idempotency_key": f"matrix-{uuid.uuid4().hex[:10]}"}
    step = pipeline.intake(runtime, job, message_id=str(uuid.uuid4()), claim=True)
    deadline = time.monotonic() + timeout
    while True:
        while step.claim or step.place_now:
            step = pipeline.attempt(runtime, step.claim) if step.claim else pipeline.place(runtime, step.order_id)
        if settled(runtime, step.order_id):
            return step.order_id
        assert time.monotonic() < deadline, f"{provider}: the order did not end"
        time.sleep(0.05)
        step = pipeline.place(runtime, step.order_id)  # a message arriving when it is due


@pytest.mark.parametrize("fault", list(SCRIPTS))
def test_fault_matrix(fault, runtime, db, sandbox):
    orders = {provider: provider_order(sandbox, provider) for provider in PROVIDERS}
    for provider in PROVIDERS:
        sandbox.script(provider, script=SCRIPTS[fault])
    with sweeping(runtime), ThreadPoolExecutor(len(PROVIDERS)) as pool:
        ended = list(pool.map(lambda p: place_until_it_ends(runtime, p, orders[p]), PROVIDERS))
    got = {provider: cell(db, sandbox, provider, order_id) for provider, order_id in zip(PROVIDERS, ended, strict=True)}
    assert got == expected(fault)
    if fault == "answer slower than the lease":  # the worker kept its claim alive: the sweep never took it
        reasons = [e["reason"] for order_id in ended for e in store.get_order(db, order_id)["events"]]
        assert not [r for r in reasons if "lease expired" in r or "late answer" in r]


def rows(db, keys: dict[str, str]) -> dict[str, dict]:
    found = db.execute("SELECT * FROM orders WHERE idempotency_key = ANY(%s)", [list(keys.values())]).fetchall()
    by_key = {row["idempotency_key"]: row for row in found}
    return {provider: by_key.get(key) for provider, key in keys.items()}


@pytest.mark.parametrize("fault", WORKER_FAULTS)
def test_fault_matrix_with_real_workers(fault, service_env, logs, db, sandbox):
    from orderrelay.worker.app import app

    redis.Redis.from_url(service_env["ORDERRELAY_BROKER_URL"]).flushdb()  # no job left behind by earlier tests
    freeze = fault == WORKER_FAULTS[1]
    orders = {provider: provider_order(sandbox, provider) for provider in PROVIDERS}
    for provider in PROVIDERS:  # each order is made at once; its answer comes later (or never reaches the worker)
        sandbox.script(provider, script=[{"after_create": True, "delay": 15 if freeze else 60}])
    name = f"matrix-{'frozen' if freeze else 'killed'}"
    keys = {provider: f"{name}-{provider}-{uuid.uuid4().hex[:6]}" for provider in PROVIDERS}
    with started(processes.beat(service_env, logs)), contextlib.ExitStack() as stack:
        first = stack.enter_context(started(processes.worker(service_env, logs, name=name, concurrency=8)))
        for provider in PROVIDERS:
            app.send_task(
                TASK_SUBMIT, kwargs={"provider": provider, "order": orders[provider], "idempotency_key": keys[provider]}
            )

        def all_mid_call():
            made = all(sandbox.orders(p)["count"] == 1 for p in PROVIDERS)
            return made and all(r and r["status"] == Status.PLACING for r in rows(db, keys).values())

        wait_until(all_mid_call, 30, message="every order made at the provider, its answer not yet back")
        if freeze:
            # A second worker runs the sweeps and places what the sweep gives back while the first one is frozen.
            stack.enter_context(started(processes.worker(service_env, logs, name=f"{name}-2", concurrency=8)))
            os.kill(first.popen.pid, signal.SIGSTOP)
            try:
                wait_until(
                    lambda: all(r["status"] != Status.PLACING for r in rows(db, keys).values()),
                    20,
                    message="the sweep to take back the frozen worker's claims",
                )
            finally:
                os.kill(first.popen.pid, signal.SIGCONT)
        else:
            first.popen.kill()
            first.popen.wait()
            stack.enter_context(started(processes.worker(service_env, logs, name=f"{name}-2", concurrency=8)))
        wait_until(
            lambda: all(r["status"] in FINAL_STATUSES for r in rows(db, keys).values()),
            40,
            message="every order to end",
        )
        if freeze:  # the woken worker's answers arrive after its claims were taken: recorded, and it lives on
            wait_until(
                lambda: all(
                    any("late answer" in e["reason"] for e in store.get_order(db, r["id"])["events"])
                    for r in rows(db, keys).values()
                ),
                30,
                message="the frozen worker's late answers",
            )
            assert first.alive()
    ended = rows(db, keys)
    got = {provider: cell(db, sandbox, provider, ended[provider]["id"]) for provider in PROVIDERS}
    assert got == expected(fault)
