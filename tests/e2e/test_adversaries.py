"""Issue 24's adversaries, one cell each: the newest mechanisms (the shared limits, the outcome write, token grants,
notifications, the producer's note, the log scrubber) against what breaks them. Every cell is real: real Redis and
Postgres, real HTTP to the sandbox (which scripts token endpoints, rates and faults), and real ``celery worker``
processes, killed or starved, wherever a worker is involved. Each cell failed on the commit before issue 24.

Each cell: the adversary -> the promise it must not break.

1. a token endpoint that times out, answers 503, drops the connection, answers a page or a token no header can
   carry -> no create went out: never in doubt, ``failed`` once the attempts run out;
2. Postgres refusing every write, for longer than the lease, right after a Chaiz and an Extend answer -> both end
   ``placed`` with the provider's reference, which was logged before the first refused write; and a Chaiz answer
   with a value Postgres or psycopg never takes (a lone surrogate, NaN, a number or an object for its status) ->
   ``placed`` with its reference;
3. a worker SIGKILLed while its claims wait for rate turns, for a token, or for a connection to a provider slow to
   accept -> each order placed once, none in doubt;
4. Retry-After inf, 1e400, 1e12, NaN, -5, a date in year 9999, also on a half-open probe -> recorded ``retrying``, the
   pause bounded, shown and lifted by ``orderrelay limits resume``; no slot, seat or probe leaks;
5. a herd of 40 orders at 2/s -> deferred without a counted attempt (one attempt each), no spin;
6. a herd of 60 orders at 20/s, burst 1, and one of 20 while the worker's loop executor is kept busy -> the provider's
   own bucket (the burst and one call of jitter) never answers 429, no two calls within 10 ms;
7. a full ceiling, a worker killed holding a seat, a Redis whose answer is lost -> waiters woken when a seat frees
   (a dead worker's within its lease), no spin, no seat leaked;
8. a pause longer than the countdown horizon -> a ``due_at`` for the sweep, never a countdown Redis redelivers;
9. a host whose clock is 301 s ahead -> seats on Redis's clock; a call longer than any lease keeps its seat;
10. a worker started with a ceiling of "²" -> one line naming the variable, exit 1;
11. a try of a delivery outliving its lease while another delivers -> ``delivered`` is final: two POSTs, not three;
12. a Redis that refuses the note's HSET after the job's LPUSH -> the producer returns the id; the job placed once;
13. a deferral by a worker whose claim was recovered meanwhile -> the recovered, counted attempt stays; totals agree;
14. a numeric idempotency key (16 digits, no card number) -> searchable in the worker's log;
15. token grants, lookups, follow-ups and the end of a pause -> token, create and lookup take turns; a pause holds the
    follow-up; the orders a pause held come back spread out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import subprocess
import sys
import threading
import time
import types
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from celery import Celery
from psycopg.rows import dict_row

from orderrelay.core import limits, notify, pipeline
from orderrelay.core.limits import Pass, SharedLimits, redis_key
from orderrelay.foundation.constants import FINAL_STATUSES, Status
from orderrelay.foundation.vault import Vault
from orderrelay.providers.base import LONGEST_RETRY_AFTER
from orderrelay.store import orders as store
from orderrelay.tools import processes
from tests.conftest import forget_limits, started, wait_until
from tests.e2e.test_fault_matrix import place_until_it_ends as drive
from tests.helpers import provider_order, ref_field, run_cli

pytestmark = pytest.mark.e2e


@dataclasses.dataclass
class Ctx:
    """What a cell works with: the tests' services, the sandbox, and ways to make runtimes, workers and jobs."""

    service_env: dict
    logs: object
    db: psycopg.Connection
    sandbox: object
    runtime: object
    admin_url: str
    database_url: str
    own: list = dataclasses.field(default_factory=list)

    def env(self, broker_db: int, **settings: str) -> dict:
        """The tests' environment on a Redis db of the cell's own (emptied: no message of another test reaches its
        workers), with ORDERRELAY_* overrides."""
        env = dict(self.service_env)
        env["ORDERRELAY_BROKER_URL"] = env["ORDERRELAY_BROKER_URL"].rsplit("/", 1)[0] + f"/{broker_db}"
        redis.Redis.from_url(env["ORDERRELAY_BROKER_URL"]).flushdb()
        env.update({f"ORDERRELAY_{k.upper()}": v for k, v in settings.items()})
        return env

    def runtime_with(self, **settings) -> object:
        """An in-process runtime (pool, loop, HTTP session, limits) whose settings differ from the tests' own."""
        from orderrelay.worker.runtime import Runtime

        rt = Runtime(dataclasses.replace(self.runtime.settings, **settings))
        self.own.append(rt)
        return rt

    def worker(self, env: dict, name: str, concurrency: int = 16) -> processes.Process:
        return processes.worker(env, self.logs, name=f"{name}-{uuid.uuid4().hex[:4]}", concurrency=concurrency)

    def send(self, env: dict, provider: str, orders: list[dict], tag: str) -> list[str]:
        """Jobs sent as checkout code sends them (orderrelay's producer); their idempotency keys."""
        from orderrelay.producer import send

        app = Celery(broker=env["ORDERRELAY_BROKER_URL"], set_as_current=False)
        vault = Vault([env["ORDERRELAY_FERNET_KEYS"]])
        keys = [f"{tag}-{n}-{uuid.uuid4().hex[:6]}" for n in range(len(orders))]
        for key, order in zip(keys, orders, strict=True):
            send(app, vault, provider, order, idempotency_key=key)
        return keys

    def rows(self, keys: list[str]) -> list[dict]:
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            return conn.execute("SELECT * FROM orders WHERE idempotency_key = ANY(%s)", [keys]).fetchall()

    def ended(self, keys: list[str], timeout: float) -> list[dict]:
        def done():
            rows = self.rows(keys)
            return rows if len(rows) == len(keys) and all(r["status"] in FINAL_STATUSES for r in rows) else None

        return wait_until(done, timeout, message=f"{len(keys)} orders to end")

    def placed(self, keys: list[str], timeout: float) -> list[dict]:
        def done():
            rows = self.rows(keys)
            return rows if len(rows) == len(keys) and all(r["status"] == Status.PLACED for r in rows) else None

        return wait_until(done, timeout, message=f"{len(keys)} orders placed")

    def attempts(self, order_id) -> list[dict]:
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            return store.get_order(conn, order_id)["attempts"]

    def events(self, order_id) -> list[str]:
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            return [e["reason"] for e in store.get_order(conn, order_id)["events"]]


def busiest(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times)), default=0)


# --- 1 ------------------------------------------------------------------------------------------------------------

TOKEN_FAULTS = {
    "timeout": {"delay": 3},
    "503": 503,
    "dropped": "drop",
    "a 200 that is not JSON": "not_json",
    "a 200 whose token no header can carry": {"token": "tok\nen"},  # aiohttp refuses the header: nothing is written
}
GRANTING = ("extend", "adobe_vip", "webroot", "battleface")


def token_grant_gets_no_answer(t: Ctx) -> None:
    rt = t.runtime_with(http_read_timeout=1.0)
    got, creates = {}, {}
    for fault, step in TOKEN_FAULTS.items():
        orders = {p: provider_order(t.sandbox, p) for p in GRANTING}
        for provider in GRANTING:  # every token request of the order's three attempts meets the fault
            t.sandbox.script(provider, token_script=[step] * 3)
        rt.http.tokens.clear()  # the process's tokens ran out: each attempt asks for one
        with ThreadPoolExecutor(len(GRANTING)) as pool:
            ended = list(pool.map(drive, [rt] * len(GRANTING), GRANTING, [orders[p] for p in GRANTING]))
        for provider, order_id in zip(GRANTING, ended, strict=True):
            outcomes = [a["outcome"] for a in t.attempts(order_id)]
            got[(fault, provider)] = (store.get_order(t.db, order_id)["status"], outcomes)
            creates[(fault, provider)] = t.sandbox.orders(provider)["create_requests"]
    assert got == {cell: (Status.FAILED, ["retryable"] * 3) for cell in got}
    assert set(creates.values()) == {0}  # no create request ever went out


# --- 2 ------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def refusing(t: Ctx):
    """Postgres refusing every write to the tests' database (as a demoted primary or an unpromoted standby does:
    "cannot execute UPDATE in a read-only transaction"), until the end; each time every session is ended, so that
    the pools' new ones are as the database now says."""
    name = urlsplit(t.database_url).path.lstrip("/")
    with psycopg.connect(t.admin_url, autocommit=True) as admin:

        def every_session_anew() -> None:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])

        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        every_session_anew()
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
            every_session_anew()


def placed_answer_outlives_postgres(t: Ctx) -> None:
    env = t.env(8)
    pair = ("chaiz", "extend")
    for provider in pair:  # each order is made at once; its answer comes 3 s later
        t.sandbox.script(provider, script=[{"after_create": True, "delay": 3}])
    orders = {p: provider_order(t.sandbox, p) for p in pair}
    with started(processes.beat(env, t.logs)), started(t.worker(env, "refused")) as worker:
        keys = {p: t.send(env, p, [orders[p]], f"refused-{p}")[0] for p in pair}
        wait_until(lambda: all(t.sandbox.orders(p)["count"] == 1 for p in pair), 30, message="both orders made")
        with refusing(t):
            time.sleep(3 + 2 * 5 + 1)  # the answers come while Postgres refuses them, and every lease (5 s) runs out
        # (the sweep may find an order's lease run out before its worker's write gets in: in doubt for a moment)
        rows = {r["provider"]: r for r in t.placed(list(keys.values()), 60)}
        log = worker.log()
    lines = log.splitlines()
    for provider in pair:
        made = t.sandbox.orders(provider)
        ref, row = str(made["orders"][0][ref_field(provider)]), rows[provider]
        assert (row["status"], row["provider_ref"], made["count"]) == (Status.PLACED, ref, 1)
        answer = next(i for i, line in enumerate(lines) if ref in line and f"order_id={row['id']}" in line)
        refused = next(
            i for i, line in enumerate(lines) if "did not take the outcome" in line and str(row["id"]) in line
        )
        logged = datetime.strptime(lines[answer][1:24], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
        assert answer < refused  # the answer was logged before the write Postgres refused ...
        assert logged < row["placed_at"] - timedelta(seconds=5)  # ... which was tried again until Postgres took it


HOSTILE_ANSWERS = {
    "a status with a lone surrogate": {"response.status": "\ud800"},
    "a status that is NaN": {"response.status": float("nan")},
    "a status that is a number": {"response.status": 7},
    "a status that is an object": {"response.status": {"code": 1}},
    "NaN and a NUL elsewhere in the answer": {"response.note": float("nan"), "response.extra": "a\u0000b"},
}


def placed_answer_postgres_will_not_take(t: Ctx) -> None:
    rt = t.runtime_with()
    got = {}
    for name, patch in HOSTILE_ANSWERS.items():
        t.sandbox.admin("reset", {})
        t.sandbox.script("chaiz", script=[{"after_create": True, "patch": patch}])
        order_id = drive(rt, "chaiz", provider_order(t.sandbox, "chaiz"))
        row, made = store.get_order(t.db, order_id), t.sandbox.orders("chaiz")
        got[name] = (row["status"], row["provider_ref"] == str(made["orders"][0][ref_field("chaiz")]), made["count"])
    assert got == dict.fromkeys(HOSTILE_ANSWERS, (Status.PLACED, True, 1))


# --- 3 ------------------------------------------------------------------------------------------------------------


def killed_while_waiting(t: Ctx) -> None:
    # twelve claims at 1/s: the worker is killed 3 s in, with its other claims waiting for their turns
    env = t.env(7, rate_limits="battleface=1/second")
    orders = [provider_order(t.sandbox, "battleface") for _ in range(12)]
    turns = killed_then_replaced(t, env, orders, "turns", "create_requests", 3)
    # a claim waiting for a token that does not come: the worker (a new process, no token yet) is killed in the grant
    t.sandbox.admin("reset", {})
    env = t.env(7)
    order = provider_order(t.sandbox, "battleface")
    t.sandbox.script("battleface", token_script=[{"delay": 60}])
    token = killed_then_replaced(t, env, [order], "token", "token_requests", 1)
    assert {"rate turns": turns, "a token grant": token} == {
        "rate turns": ([Status.PLACED], 12, 12),
        "a token grant": ([Status.PLACED], 1, 1),
    }
    # a worker killed while it connects to the provider (one slow to accept): no byte was written. Whether its claim
    # marked the attempt (a worker that has authenticated to Chaiz before: nothing left to wait for) or not
    connects = {warm: killed_while_connecting(t, warm) for warm in (False, True)}
    assert connects == {False: (False, Status.QUEUED, ["retryable"], 1), True: (True, Status.QUEUED, ["retryable"], 1)}


def killed_while_connecting(t: Ctx, warm: bool) -> tuple:
    """A Chaiz order placed by a process of its own, SIGKILLed while it connects; then recovered and placed here:
    whether the claim marked it, the status recovery gave it, its attempts, the orders Chaiz holds."""
    t.sandbox.admin("reset", {})
    order = provider_order(t.sandbox, "chaiz")
    with slow_to_accept() as port:
        env = {**t.service_env, "ORDERRELAY_CHAIZ_BASE_URL": f"http://127.0.0.1:{port}/chaiz"}
        env["ORDERRELAY_HTTP_CONNECT_TIMEOUT"] = "60"
        argv = [sys.executable, "-c", PLACE_ONE, json.dumps(order), "warm" if warm else "cold"]
        connecting = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        marked = connecting.stdout.readline().strip() == "marked"  # it printed that once it had its claim
        time.sleep(1.5)
        connecting.kill()
        connecting.wait()
    order_id = t.db.execute("SELECT id FROM orders WHERE status = 'placing'").fetchone()["id"]
    time.sleep(t.runtime.settings.lease_seconds + 0.5)
    pipeline.sweep(t.runtime)
    recovered = store.get_order(t.db, order_id)
    assert pipeline.place(t.runtime, order_id).status == Status.PLACED
    outcomes = [a["outcome"] for a in recovered["attempts"]]
    return marked, recovered["status"], outcomes, t.sandbox.orders("chaiz")["count"]


# A worker of one order, in a process of its own: the order (JSON) taken in and placed, as a worker does.
PLACE_ONE = """
import json, sys
from orderrelay.config.settings import get_settings
from orderrelay.core import pipeline
from orderrelay.worker.runtime import Runtime
rt = Runtime(get_settings())
if sys.argv[2] == "warm":
    rt.http.authenticated.add("chaiz")  # as a worker that has placed a Chaiz order before (its token is static)
step = pipeline.intake(rt, {"provider": "chaiz", "order": json.loads(sys.argv[1])}, claim=True)
print("marked" if step.claim["marked"] else "unmarked", flush=True)
pipeline.attempt(rt, step.claim)
"""


@contextlib.contextmanager
def slow_to_accept():
    """A port whose listener never accepts, its backlog full: a new connection to it hangs in its handshake."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filling = [socket.create_connection(listener.getsockname(), timeout=1)]  # the one a backlog of 0 holds
    try:
        yield listener.getsockname()[1]
    finally:
        for sock in filling:
            sock.close()
        listener.close()


def killed_then_replaced(t: Ctx, env: dict, orders: list[dict], tag: str, counter: str, reached: int) -> tuple:
    """Battleface ``orders`` sent to a worker that is SIGKILLed once the sandbox's ``counter`` reaches ``reached``,
    then ended by another: their statuses, the orders battleface holds and the create requests it got."""
    since = t.db.execute("SELECT now() AS at").fetchone()["at"]
    with started(processes.beat(env, t.logs)), started(t.worker(env, f"{tag}-a")) as first:
        keys = t.send(env, "battleface", orders, tag)
        wait_until(lambda: t.sandbox.orders("battleface")[counter] >= reached, 30, message=f"{reached} {counter}")
        first.popen.kill()
        first.popen.wait()
        with started(t.worker(env, f"{tag}-b")):
            rows = t.ended(keys, 90)
    strays = t.db.execute(
        "SELECT idempotency_key FROM orders WHERE NOT idempotency_key = ANY(%s) AND created_at >= %s", [keys, since]
    ).fetchall()
    assert not strays, strays  # no job but the ones sent here (a worker left running by a test would send others)
    made = t.sandbox.orders("battleface")
    return sorted({r["status"] for r in rows}), made["count"], made["create_requests"]


# --- 4 ------------------------------------------------------------------------------------------------------------

ABSURD = {
    "inf": "inf",
    "1e400": "1e400",
    "1e12": "1e12",
    "NaN": "nan",
    "-5": "-5",
    "a date in year 9999": "Fri, 31 Dec 9999 23:59:59 GMT",
}


def absurd_retry_after(t: Ctx) -> None:
    from orderrelay.foundation.breaker import Guard

    rt = t.runtime_with()
    env = t.service_env
    got = {}
    for name, value in ABSURD.items():
        forget_limits(env["ORDERRELAY_BROKER_URL"])
        t.sandbox.script("extend", script=[{"status": 429, "retry_after": value}])
        step = pipeline.intake(rt, {"provider": "extend", "order": provider_order(t.sandbox, "extend")}, claim=True)
        step = pipeline.attempt(rt, step.claim)
        row = store.get_order(t.db, step.order_id)
        wait = (row["due_at"] - row["updated_at"]).total_seconds()
        shown = json.loads(run_cli(env, "limits", "--json").stdout)["extend"]
        lifted = run_cli(env, "limits", "resume", "extend").stdout.strip()
        after = drive(rt, "extend", provider_order(t.sandbox, "extend"))  # no slot, seat or probe left behind
        got[name] = (
            row["status"],
            wait <= LONGEST_RETRY_AFTER + 1,
            shown["paused_for"] <= LONGEST_RETRY_AFTER,
            lifted,
            store.get_order(t.db, after)["status"],
        )
    bounded_pause = (Status.RETRYING, True, True, "extend: pause lifted", Status.PLACED)
    assert got == {
        **dict.fromkeys(ABSURD, bounded_pause),
        "-5": (*bounded_pause[:3], "extend was not paused", Status.PLACED),
    }
    # a half-open circuit's probe answered 429 Retry-After: inf is recorded and frees the probe
    rt.guard = Guard(max_in_flight=100, failures=1, cooldown=0.3)
    forget_limits(env["ORDERRELAY_BROKER_URL"])
    t.sandbox.script("extend", script=[503, {"status": 429, "retry_after": "inf"}])
    first = pipeline.intake(rt, {"provider": "extend", "order": provider_order(t.sandbox, "extend")}, claim=True)
    assert pipeline.attempt(rt, first.claim).status == Status.RETRYING  # 503: the circuit opens
    time.sleep(0.7)
    probe = pipeline.intake(rt, {"provider": "extend", "order": provider_order(t.sandbox, "extend")}, claim=True)
    assert pipeline.attempt(rt, probe.claim).status == Status.RETRYING  # the probe, answered 429 Retry-After: inf
    limits.resume(env["ORDERRELAY_BROKER_URL"], "extend")
    time.sleep(0.7)
    assert store.get_order(t.db, drive(rt, "extend", provider_order(t.sandbox, "extend")))["status"] == Status.PLACED


# --- 5, 6 ---------------------------------------------------------------------------------------------------------


def herd_at_a_slow_rate(t: Ctx) -> None:
    env = t.env(6, rate_limits="extend=2/second")
    t.sandbox.admin("extend/rate", {"per_second": 2, "burst": 2})
    orders = [provider_order(t.sandbox, "extend") for _ in range(40)]
    with started(processes.beat(env, t.logs)), started(t.worker(env, "herd", concurrency=64)):
        rows = t.ended(t.send(env, "extend", orders, "herd"), 90)
    made = t.sandbox.orders("extend")
    attempts = [len(t.attempts(r["id"])) for r in rows]
    deferrals = [sum("deferred" in e for e in t.events(r["id"])) for r in rows]
    assert {r["status"] for r in rows} == {Status.PLACED}
    assert (made["create_requests"], made["rate_limited"], set(attempts)) == (40, 0, {1})  # no counted deferral
    assert max(deferrals) <= 2, deferrals  # each waited for its booked turn: no spin


def herd_beyond_the_burst(t: Ctx) -> None:
    env = t.env(6, rate_limits="extend=20/second")
    t.sandbox.admin("extend/rate", {"per_second": 20, "burst": 2})  # the burst, and one call of scheduling jitter
    orders = [provider_order(t.sandbox, "extend") for _ in range(60)]
    with started(processes.beat(env, t.logs)), started(t.worker(env, "burst", concurrency=64)):
        rows = t.ended(t.send(env, "extend", orders, "burst"), 90)
    made = t.sandbox.orders("extend")
    assert {r["status"] for r in rows} == {Status.PLACED}
    assert made["rate_limited"] == 0 and busiest(made["request_times"], 0.010) <= 2, sorted(made["request_times"])
    # a worker whose loop's executor is kept busy (slow name lookups, slow statements: eight jobs of 150 ms at a
    # time), twenty orders at once
    t.sandbox.admin("reset", {})
    t.sandbox.admin("extend/rate", {"per_second": 20, "burst": 2})
    rt = t.runtime_with(rate_limits={"extend": "20/second"})
    drive(rt, "extend", provider_order(t.sandbox, "extend"))  # its token, before the herd
    busy = threading.Event()

    async def keep_busy() -> None:
        while not busy.is_set():
            await asyncio.gather(*[asyncio.to_thread(time.sleep, 0.15) for _ in range(8)])

    asyncio.run_coroutine_threadsafe(keep_busy(), rt.loop)
    try:
        with ThreadPoolExecutor(20) as pool:
            ended = list(
                pool.map(drive, [rt] * 20, ["extend"] * 20, [provider_order(t.sandbox, "extend") for _ in range(20)])
            )
    finally:
        busy.set()
    made = t.sandbox.orders("extend")
    assert {store.get_order(t.db, order_id)["status"] for order_id in ended} == {Status.PLACED}
    assert made["rate_limited"] == 0 and busiest(made["request_times"], 0.010) <= 2, sorted(made["request_times"])


# --- 7 ------------------------------------------------------------------------------------------------------------


def full_ceiling(t: Ctx) -> None:
    # a call that ends wakes the order waiting for its seat
    env = t.env(5, concurrency_limits="chaiz=1")
    t.sandbox.script("chaiz", latency_ms=1500)
    orders = [provider_order(t.sandbox, "chaiz") for _ in range(4)]
    with started(processes.beat(env, t.logs)), started(t.worker(env, "ceiling")):
        started_at = time.monotonic()
        rows = t.ended(t.send(env, "chaiz", orders, "ceiling"), 60)
        took = time.monotonic() - started_at
    deferrals = [sum("deferred" in e for e in t.events(r["id"])) for r in rows]
    assert {r["status"] for r in rows} == {Status.PLACED} and t.sandbox.orders("chaiz")["in_flight_peak"] == 1
    assert took < 4 * 1.5 + 6, took  # woken as each seat freed, not after the 30 s a waiter waits at most
    assert max(deferrals) <= 3, deferrals
    # a worker killed mid-call holds the one seat: the waiters wait for it without spinning, and have it once the
    # seat's lease (the claims', 5 s here) runs out, the dead worker no longer renewing it
    t.sandbox.admin("reset", {})
    t.sandbox.script("chaiz", script=[{"after_create": True, "delay": 60}])
    with started(processes.beat(env, t.logs)), started(t.worker(env, "ceiling-killed")) as first:
        killed = t.send(env, "chaiz", [provider_order(t.sandbox, "chaiz")], "seat-holder")
        wait_until(lambda: t.sandbox.orders("chaiz")["count"] == 1, 30, message="the call holding the seat")
        first.popen.kill()
        first.popen.wait()
        with started(t.worker(env, "ceiling-after")):
            keys = t.send(env, "chaiz", [provider_order(t.sandbox, "chaiz") for _ in range(2)], "dead-seat")
            time.sleep(3)
            spun = [sum("deferred" in e for e in t.events(r["id"])) for r in t.rows(keys)]
            rows = t.ended(keys, 40)
            holder = t.ended(killed, 30)
    assert spun == [1, 1] and {r["status"] for r in rows} == {Status.PLACED}
    assert [r["status"] for r in holder] == [Status.IN_DOUBT]  # it was killed mid-call: Chaiz may hold it
    # Redis's answer to the seat's script lost (a connection that goes silent after the command went through): the
    # seat it took is given back once Redis answers again
    client = redis.Redis.from_url(env["ORDERRELAY_BROKER_URL"])
    with redis_proxy(env["ORDERRELAY_BROKER_URL"]) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/5"
        provider = f"stray-{uuid.uuid4().hex[:6]}"
        stray = SharedLimits(url, {}, {provider: 1})
        stray.leave(provider, stray.enter(provider, "o-0").seat)  # connected: only what follows goes unanswered
        proxy.silent = True
        unanswered = stray.enter(provider, "o-1")  # no answer within the client's 2 s: per-process caps only
        taken = client.zcard(redis_key("seats", provider))  # Redis ran the script: the seat is taken
        proxy.silent = False
        answered = stray.enter(provider, "o-2")  # Redis answers again: the stray seat goes back first
        stray.leave(provider, answered.seat)
        left = client.zcard(redis_key("seats", provider))
    assert (unanswered.allowed, unanswered.seat, taken, answered.allowed, left) == (True, None, 1, True, 0)


@contextlib.contextmanager
def redis_proxy(url: str, delay: float = 0.0):
    """A TCP proxy to the Redis of ``url`` that delays each of its answers by ``delay`` seconds, or drops them while
    ``silent`` (commands still go through)."""
    import socket

    target = redis.Redis.from_url(url).connection_pool.connection_kwargs
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = types.SimpleNamespace(port=listener.getsockname()[1], silent=False, stop=False)

    def pump(source, sink, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if answers and delay:
                    time.sleep(delay)
                if not (answers and proxy.silent):
                    sink.sendall(data)

    def serve() -> None:
        while not proxy.stop:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((target["host"], target["port"]))
            threading.Thread(target=pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, True), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield proxy
    finally:
        proxy.stop = True
        listener.close()


# --- 8, 9 ---------------------------------------------------------------------------------------------------------


def deferral_beyond_the_horizon(t: Ctx) -> None:
    rt = t.runtime_with()
    forget_limits(t.service_env["ORDERRELAY_BROKER_URL"])
    rt.limits.pause("extend", 40, "a maintenance window")
    try:
        new = pipeline.intake(rt, {"provider": "extend", "order": provider_order(t.sandbox, "extend")}, claim=True)
        queued = pipeline.intake(rt, {"provider": "extend", "order": provider_order(t.sandbox, "extend")})
        held = pipeline.place(rt, queued.order_id)
        cells = {}
        for name, step in (("at intake", new), ("when placed", held)):
            row = store.get_order(t.db, step.order_id)
            wait = (row["due_at"] - row["updated_at"]).total_seconds()
            cells[name] = (step.countdown, row["expected_at"], 40 <= wait <= 40 + limits.PAUSE_SPREAD + 1)
    finally:
        limits.resume(t.service_env["ORDERRELAY_BROKER_URL"], "extend")
    assert cells == {"at intake": (None, None, True), "when placed": (None, None, True)}  # the sweep's, no countdown


def clock_ahead(t: Ctx) -> None:
    url, provider = t.service_env["ORDERRELAY_BROKER_URL"], f"clock-{uuid.uuid4().hex[:6]}"
    ahead = (
        "import time, sys; real = time.time; time.time = lambda: real() + 301\n"
        "from orderrelay.core.limits import SharedLimits\n"
        f"l = SharedLimits({url!r}, {{}}, {{{provider!r}: 2}})\n"
        f"print(sum(l.enter({provider!r}, str(n)).allowed for n in range(2)))"
    )
    taken_ahead = int(subprocess.run([sys.executable, "-c", ahead], capture_output=True, text=True, check=True).stdout)
    here = SharedLimits(url, {}, {provider: 2}, seat_lease=3.0)
    taken_here = sum(here.enter(provider, f"h{n}").allowed for n in range(2))
    assert (taken_ahead, taken_here) == (2, 0)  # a ceiling of 2, whatever the hosts' clocks say
    client = redis.Redis.from_url(url)
    client.delete(redis_key("seats", provider))
    held = here.enter(provider, "held")  # a call that lasts longer than any lease: renewed, it keeps its seat
    for _ in range(4):
        time.sleep(1.5)
        here.renew_seats()
    seconds, micros = client.time()
    [(_, score)] = client.zrange(redis_key("seats", provider), 0, 0, withscores=True)
    left = (score - seconds * 1000 - micros / 1000) / 1000
    assert held.allowed and 2.5 <= left <= 3.0, left  # 6 s after it was taken, a lease of 3 s still ahead of it


# --- 10, 11, 12, 13, 14 -------------------------------------------------------------------------------------------


def nonsense_setting_at_start_up(t: Ctx) -> None:
    env = {**t.service_env, "ORDERRELAY_CONCURRENCY_LIMITS": "chaiz=\u00b2"}
    proc = processes.worker(env, t.logs, name=f"nonsense-{uuid.uuid4().hex[:4]}", wait=False)
    proc.popen.wait(60)
    text = proc.log()
    proc.stop()
    assert proc.popen.returncode == 1 and "Traceback" not in text
    assert [line for line in text.splitlines() if "ORDERRELAY_CONCURRENCY_LIMITS" in line], text


def delivery_outliving_its_lease(t: Ctx) -> None:
    rt = t.runtime_with(notify_timeout=60.0)
    hook = {"url": f"{t.sandbox.url}/_receiver/checkout"}
    job = {"provider": "extend", "order": provider_order(t.sandbox, "extend"), "notify": hook}
    step = pipeline.intake(rt, job, claim=True)
    note = pipeline.attempt(rt, step.claim).notification
    t.sandbox.script("receiver", script=[{"status": 500, "after_create": True, "delay": 3}, 200])
    pool = ThreadPoolExecutor(1)
    first = pool.submit(notify.deliver, rt, note, None)  # its receiver answers 500 after 3 s
    wait_until(lambda: len(t.sandbox.admin("receiver/received")) == 1, 10, message="the first POST")
    lease = t.db.execute(
        "SELECT extract(epoch FROM next_attempt_at - now()) AS s FROM notifications WHERE id = %s", [note]
    )
    held_for = lease.fetchone()["s"]
    overlapping = notify.deliver(rt, note, None)  # a second message for the same delivery: it waits its turn
    t.db.execute("UPDATE notifications SET next_attempt_at = now() WHERE id = %s", [note])  # the first froze past it
    second = notify.deliver(rt, note, None)
    late = first.result(30)
    pool.shutdown()
    third = notify.deliver(rt, note, None)
    status = t.db.execute("SELECT status FROM notifications WHERE id = %s", [note]).fetchone()["status"]
    posts = len(t.sandbox.admin("receiver/received"))
    assert held_for > rt.settings.notify_timeout  # the lease outlasts the longest try
    assert (overlapping, second, late, third, status, posts) == (
        "skipped",
        "delivered",
        "stale",
        "skipped",
        "delivered",
        2,
    )


def note_refused_after_the_publish(t: Ctx) -> None:
    from orderrelay.core.pending import KEY
    from orderrelay.producer import send

    env = t.env(4)
    admin = redis.Redis.from_url(env["ORDERRELAY_BROKER_URL"])
    user = f"no-hset-{uuid.uuid4().hex[:6]}"
    admin.acl_setuser(
        user,
        enabled=True,
        passwords=["+pw-0123456789"],
        keys=["*"],
        channels=["*"],
        categories=["+@all"],
        commands=["-hset"],
    )
    try:
        parts = urlsplit(env["ORDERRELAY_BROKER_URL"])
        refused_url = parts._replace(netloc=f"{user}:pw-0123456789@{parts.hostname}:{parts.port}").geturl()
        app = Celery(broker=refused_url, set_as_current=False)
        key = f"note-{uuid.uuid4().hex[:6]}"
        order_id = send(
            app,
            Vault([env["ORDERRELAY_FERNET_KEYS"]]),
            "extend",
            provider_order(t.sandbox, "extend"),
            idempotency_key=key,
        )
    finally:
        admin.acl_deluser(user)
    assert admin.llen("orders") == 1 and admin.hlen(KEY) == 0  # published, and its note refused
    with started(t.worker(env, "noted")):
        (row,) = t.ended([key], 30)
    assert (str(row["id"]), row["status"], t.sandbox.orders("extend")["count"]) == (order_id, Status.PLACED, 1)


def deferral_after_the_claim_was_recovered(t: Ctx) -> None:
    rt = t.runtime_with(rate_limits={"battleface": "1/minute"})
    forget_limits(t.service_env["ORDERRELAY_BROKER_URL"])
    step = pipeline.intake(rt, {"provider": "battleface", "order": provider_order(t.sandbox, "battleface")})
    assert rt.limits.enter("battleface", "another").allowed  # the minute's one turn is another order's
    claim = store.claim(t.db, step.order_id, lease=0.2, reason="claimed")  # then its worker froze
    time.sleep(0.3)
    pipeline.sweep(rt)  # the lease ran out: recovered (nothing was sent), its attempt finished and counted
    recovered = t.attempts(step.order_id)
    woke = pipeline.attempt(rt, {**claim, "since": time.monotonic() - 60, "admitted": Pass(True)})
    store.fold_totals(t.db)
    totals = t.db.execute(
        "SELECT coalesce(sum(n), 0) AS n FROM attempt_totals WHERE provider = 'battleface'"
    ).fetchone()
    finished = t.db.execute(
        "SELECT count(*) AS n FROM attempts a JOIN orders o ON o.id = a.order_id "
        "WHERE o.provider = 'battleface' AND a.outcome IS NOT NULL"
    ).fetchone()
    assert woke.status == pipeline.UNCLAIMED and t.attempts(step.order_id) == recovered  # its attempt did not vanish
    assert len(recovered) == 1 and totals["n"] == finished["n"]


def numeric_key_searchable(t: Ctx) -> None:
    from orderrelay.producer import send

    env = t.env(3)
    key = "2026120412345678"  # 16 digits that are no card number (they fail the Luhn check)
    app = Celery(broker=env["ORDERRELAY_BROKER_URL"], set_as_current=False)
    send(
        app, Vault([env["ORDERRELAY_FERNET_KEYS"]]), "extend", provider_order(t.sandbox, "extend"), idempotency_key=key
    )
    (raw,) = redis.Redis.from_url(env["ORDERRELAY_BROKER_URL"]).lrange("orders", 0, -1)
    shown = json.loads(raw)["headers"]["kwargsrepr"]  # what Flower and the worker's log show of the job
    with started(t.worker(env, "numeric")):
        t.ended([key], 30)
    assert key in shown, shown


# --- 15 -----------------------------------------------------------------------------------------------------------


def every_request_takes_turns(t: Ctx) -> None:
    rt = t.runtime_with(rate_limits={"extend": "2/second"})
    forget_limits(t.service_env["ORDERRELAY_BROKER_URL"])
    t.sandbox.script("extend", script=["drop_after_create"])  # in doubt: the next attempt looks it up first
    order_id = drive(rt, "extend", provider_order(t.sandbox, "extend"))
    calls = t.sandbox.orders("extend")["calls"]
    kinds = [kind for kind, _ in calls]
    gaps = [round(b - a, 3) for (_, a), (_, b) in itertools.pairwise(calls)]
    assert store.get_order(t.db, order_id)["status"] == Status.PLACED
    assert kinds[:3] == ["token", "create", "lookup"] and min(gaps) >= 0.45, (kinds, gaps)
    # a pause holds follow-up reads too
    adobe = drive(rt, "adobe_vip", provider_order(t.sandbox, "adobe_vip"))
    reads = lambda: sum(kind == "read" for kind, _ in t.sandbox.orders("adobe_vip")["calls"])  # noqa: E731
    rt.limits.pause("adobe_vip", 30, "a maintenance window")
    before = reads()
    pipeline.follow_up(rt)
    held = reads() - before
    limits.resume(t.service_env["ORDERRELAY_BROKER_URL"], "adobe_vip")
    pipeline.follow_up(rt)
    assert (held, reads() - before, store.get_order(t.db, adobe)["status"]) == (0, 1, Status.PLACED)
    # the end of a pause: the orders it held come back spread out, not all at once
    env = t.env(2)
    orders = [provider_order(t.sandbox, "chaiz") for _ in range(20)]
    with started(processes.beat(env, t.logs)), started(t.worker(env, "after-pause", concurrency=32)):
        limits.pause(env["ORDERRELAY_BROKER_URL"], "chaiz", 3, "a maintenance window")
        t.ended(t.send(env, "chaiz", orders, "pause-end"), 60)
    times = sorted(t.sandbox.orders("chaiz")["request_times"])
    assert times[-1] - times[0] >= 1.0 and busiest(times, 0.1) <= 8, [round(x - times[0], 2) for x in times]


CELLS = {
    "1 a token grant that gets no answer": token_grant_gets_no_answer,
    "2 a placed answer that Postgres will not take yet": placed_answer_outlives_postgres,
    "2 a placed answer Postgres will never take as it is": placed_answer_postgres_will_not_take,
    "3 a worker killed while its claims wait": killed_while_waiting,
    "4 an absurd Retry-After": absurd_retry_after,
    "5 a herd at a slow rate": herd_at_a_slow_rate,
    "6 a herd beyond the burst": herd_beyond_the_burst,
    "7 a full ceiling": full_ceiling,
    "8 a deferral beyond the countdown horizon": deferral_beyond_the_horizon,
    "9 a clock 301 s ahead": clock_ahead,
    "10 a nonsense limit at start-up": nonsense_setting_at_start_up,
    "11 a delivery try outliving its lease": delivery_outliving_its_lease,
    "12 a note Redis refuses after the publish": note_refused_after_the_publish,
    "13 a deferral after the claim was recovered": deferral_after_the_claim_was_recovered,
    "14 a numeric key in the log": numeric_key_searchable,
    "15 token grants, lookups, follow-ups and a pause's end": every_request_takes_turns,
}


@pytest.mark.parametrize("item", list(CELLS))
def test_adversary(item, service_env, logs, db, sandbox, runtime, servers, database_url):
    t = Ctx(service_env, logs, db, sandbox, runtime, servers[1], database_url)
    try:
        CELLS[item](t)
    finally:
        for rt in t.own:
            rt.close()
        forget_limits(service_env["ORDERRELAY_BROKER_URL"])
