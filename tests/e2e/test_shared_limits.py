"""Providers' limits, shared by every worker: four worker processes against a sandbox provider that allows
20 requests/s keep within it together (no 429, each order placed once); a Retry-After one worker gets pauses the
others until the time it named."""

from __future__ import annotations

import uuid

import pytest

from orderrelay.foundation.constants import Status
from orderrelay.tools import processes
from tests.conftest import started, wait_until

pytestmark = pytest.mark.e2e


def submit_extend(count: int, tag: str) -> list[str]:
    from orderrelay.producer import submit_order
    from orderrelay.providers import get

    keys = [f"{tag}-{n}" for n in range(count)]
    for key in keys:
        submit_order("extend", get("extend").sample(key), idempotency_key=key)
    return keys


def all_placed(db, keys: list[str], timeout: float) -> list[dict]:
    def done():
        rows = db.execute("SELECT * FROM orders WHERE idempotency_key = ANY(%s)", [keys]).fetchall()
        return rows if len(rows) == len(keys) and all(r["status"] == Status.PLACED for r in rows) else None

    return wait_until(done, timeout, message=f"{len(keys)} orders placed")


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    return max((sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times)), default=0)


def test_four_workers_keep_a_providers_rate_together(service_env, logs, db, sandbox):
    env = {**service_env, "ORDERRELAY_RATE_LIMITS": "extend=20/second", "ORDERRELAY_CONCURRENCY_LIMITS": "extend=8"}
    # The limiter paces turns on Redis's clock; a process too busy to send its turn on time (four workers starting on
    # this machine's two CPUs) can send a few at once, as every client does: the sandbox, like real providers,
    # allows a burst (10).
    sandbox.admin("extend/rate", {"per_second": 20, "burst": 10})
    workers = [processes.worker(env, logs, name=f"limited-{n}", concurrency=16) for n in range(4)]
    try:
        keys = submit_extend(100, f"rate-{uuid.uuid4().hex[:6]}")
        rows = all_placed(db, keys, 90)
    finally:
        for proc in workers:
            proc.stop()
    made = sandbox.orders("extend")
    times = made["request_times"]
    gaps = [round(b - a, 3) for a, b in zip(sorted(times), sorted(times)[1:], strict=False)]
    assert made["rate_limited"] == 0, gaps  # the provider never had to turn a call away
    assert made["count"] == 100 and made["create_requests"] == 100  # each order once, no call wasted
    assert busiest_second(times) <= 20 + 10  # the limit, and the burst a late process may send
    assert (len(times) - 1) / (max(times) - min(times)) <= 21, (len(times), max(times) - min(times))
    attempts = db.execute("SELECT count(*) AS n FROM attempts WHERE order_id = ANY(%s)", [[r["id"] for r in rows]])
    assert attempts.fetchone()["n"] == 100  # an order held back by the limit was deferred, not counted
    assert sum("deferred" in proc.log() for proc in workers) >= 2  # the limit held back more than one worker


def test_a_retry_after_one_worker_gets_pauses_every_worker(service_env, logs, db, sandbox):
    sandbox.script("extend", script=[{"status": 429, "retry_after": 3}])
    with (
        started(processes.worker(service_env, logs, name="paused-a", concurrency=2)) as a,
        started(processes.worker(service_env, logs, name="paused-b", concurrency=2)) as b,
    ):
        first = submit_extend(1, f"pause-{uuid.uuid4().hex[:6]}")
        wait_until(lambda: sandbox.orders("extend")["request_times"], 30, message="the first call")
        turned_away = sandbox.orders("extend")["request_times"][0]
        rest = submit_extend(6, f"paused-{uuid.uuid4().hex[:6]}")
        all_placed(db, first + rest, 60)
        logs_of = {"a": a.log(), "b": b.log()}
    times = sorted(sandbox.orders("extend")["request_times"])
    assert times[0] == turned_away
    assert all(t >= turned_away + 2.9 for t in times[1:]), [round(t - turned_away, 2) for t in times]
    told = [name for name, text in logs_of.items() if "paused for 3.0s, for every worker" in text]
    others = [name for name in logs_of if name not in told]
    assert told and others, logs_of  # one worker heard the 429 ...
    held = "extend is paused for every worker: it asked for a pause (Retry-After)"
    assert all(held in logs_of[name] for name in others)  # ... and the others held their calls too
    assert sandbox.orders("extend")["count"] == 7


def test_status_and_the_metrics_show_each_providers_limits(service_env, sandbox):
    import json
    from types import SimpleNamespace

    from orderrelay.api.metrics import LimitsCollector
    from tests.helpers import run_cli

    env = {**service_env, "ORDERRELAY_RATE_LIMITS": "extend=20/second", "ORDERRELAY_CONCURRENCY_LIMITS": "extend=8"}
    shown = run_cli(env, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    limits = json.loads(shown.stdout)["limits"]
    assert limits["extend"]["rate"] == "20/second" and limits["extend"]["ceiling"] == 8
    assert {"booked_ahead_s", "in_flight", "paused_for"} <= set(limits["extend"])
    settings = SimpleNamespace(
        broker_url=env["ORDERRELAY_BROKER_URL"],
        providers={"extend": None, "chaiz": None},
        rate_limits={"extend": "20/second"},
        concurrency_limits={"extend": 8},
    )
    from orderrelay.core import limits as shared

    shared.pause(env["ORDERRELAY_BROKER_URL"], "chaiz", 30, "an operator's")  # a provider with no limit of its own
    try:
        families = {f.name: f for f in LimitsCollector(settings).collect()}
        paused = {s.labels["provider"]: s.value for s in families["orderrelay_limit_paused_seconds"].samples}
        assert 29 <= paused["chaiz"] <= 30 and paused["extend"] == 0
        shown = json.loads(run_cli(env, "limits", "--json").stdout)
        assert shown["chaiz"]["pause_reason"] == "an operator's"
    finally:
        shared.resume(env["ORDERRELAY_BROKER_URL"], "chaiz")
    assert families["orderrelay_limits_readable"].samples[0].value == 1
    assert families["orderrelay_limit_ceiling"].samples[0].labels == {"provider": "extend"}
    away = SimpleNamespace(
        broker_url="redis://127.0.0.1:1/0", providers={}, rate_limits={"extend": "20/second"}, concurrency_limits={}
    )
    assert {f.name: f for f in LimitsCollector(away).collect()}["orderrelay_limits_readable"].samples[0].value == 0
