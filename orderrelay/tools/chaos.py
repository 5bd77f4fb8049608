"""``orderrelay chaos``: the fault drill, from the first message to the last row.

It starts a Redis (with its append-only file) and a PostgreSQL of its own - never the machine's, never a
deployment's - the sandbox, worker processes and beat, and sends orders for every provider at a steady rate while
damage lands on a schedule that spans the whole life of a job:

- workers SIGKILLed (whatever they hold: jobs not yet taken in, calls in flight) and started again;
- workers frozen with SIGSTOP past their lease, then resumed;
- Redis SIGKILLed and restarted from its append-only file, once while it runs ``appendfsync always`` (the first
  half of the orders) and once under ``everysec`` (the second half);
- Redis flushed once every job has its row (a flush is an operator's mistake, not a crash);
- PostgreSQL stopped with an immediate shutdown and started again (transactions aborted, connections reset);
- the sandbox answering with latency, 429s, 503s, 500s, dropped connections, and orders made and then failed
  (502 or 504 after the commit, a dropped answer after the commit).

A producer whose send fails (Redis down) sends again, as a real one would; a job counts as submitted once Redis
took it. Then the drill waits for every order to end and checks each job against what its provider holds:
lost before intake (no row), lost after intake (a row that never ends), duplicates per provider, in-doubt orders
(and whether the provider has each), and contradictions (``placed`` here but not there, ``failed`` here but
placed there). Every kill and freeze asked is delivered, or the report says why not.
"""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import redis
from psycopg.rows import dict_row
from rich.progress import Progress

from orderrelay import providers
from orderrelay.config.settings import get_settings
from orderrelay.foundation.constants import FINAL_STATUSES, Status
from orderrelay.foundation.vault import Vault
from orderrelay.producer import send
from orderrelay.sandbox.app import modules
from orderrelay.tools.harness import Harness, console, harness
from orderrelay.tools.servers import PostgresServer, RedisServer

# What identifies a job's order at its provider (the sandbox's record), and where that record keeps our reference.
FAULTS = [
    500,
    503,
    {"status": 429, "retry_after": 1},
    "drop",
    "drop_after_create",
    {"status": 502, "after_create": True, "gateway": True},
    {"status": 504, "after_create": True, "gateway": True},
]
SETTINGS = dict(
    lease_seconds="6",
    sweep_interval="1",
    requeue_grace="4",
    max_attempts="12",
    backoff_base="0.2",
    backoff_max="2",
    breaker_failures="8",
    breaker_cooldown="1",
    retry_rounds="0",
    db_pool_size="8",
)


@dataclass
class Report:
    """What the drill did and found."""

    submitted: int = 0
    submitted_by_durability: dict[str, int] = field(default_factory=dict)
    end_states: dict[str, int] = field(default_factory=dict)
    lost_before_intake: dict[str, list[str]] = field(default_factory=dict)  # by Redis's appendfsync then
    lost_after_intake: dict[str, list[str]] = field(default_factory=dict)  # by appendfsync when it was sent
    duplicates: dict[str, int] = field(default_factory=dict)
    in_doubt: list[dict] = field(default_factory=list)
    contradictions: list[dict] = field(default_factory=list)
    kills_asked: int = 0
    worker_kills: int = 0
    kills_mid_call: int = 0  # kills while some order of the drill was being placed
    calls_cut: int = 0  # attempts whose worker was lost during the call
    freezes_asked: int = 0
    worker_freezes: int = 0
    redis_restarts: dict[str, int] = field(default_factory=dict)  # by appendfsync
    redis_flushes: int = 0
    postgres_restarts: int = 0
    not_delivered: list[str] = field(default_factory=list)  # damage asked for and why it did not happen
    timeline: list[str] = field(default_factory=list)  # each damage, and each job lost before intake, in seconds
    seconds_to_drain: float = 0.0  # from the last fault (the flush aside) to the last order ending
    sent_per_second: float = 0.0  # the producer's pace, Redis restarts and fsyncs included
    seconds: float = 0.0

    def passed(self) -> bool:
        """After intake nothing lost, doubled or contradicted, every in-doubt order accounted for; before intake
        nothing lost while Redis wrote every command to disk; and all the damage asked for was done."""
        accounted = all(d["accounted"] for d in self.in_doubt)
        doubled = any(self.duplicates.values())
        after = not any(self.lost_after_intake.values()) and not doubled and not self.contradictions
        before = not self.lost_before_intake.get("always")
        return after and before and accounted and not self.not_delivered


def _jobs(h: Harness, count: int, rng: random.Random, run: str) -> list[dict]:
    """``count`` jobs, round the provider table, each the provider's sample order (its plan, quote or cart made in
    the sandbox); one Extend order in seven waits (a fractional-day ``transactionDelay``), one other in nine has a
    ``not_before``."""
    sandboxes = modules()
    ids = list(providers.REGISTRY)
    jobs = []
    for i in range(count):
        provider = ids[i % len(ids)]
        tag = f"chaos-{run}-{i}"
        not_before = None
        extra = {"transactionDelay": rng.uniform(2, 20) / 86400} if provider == "extend" and i % 7 == 0 else {}
        order = providers.get(provider).sample(tag, h.admin, **extra)
        if provider != "extend" and i % 9 == 0:
            not_before = (datetime.now(UTC) + timedelta(seconds=rng.uniform(2, 20))).isoformat()
        natural = sandboxes[provider].natural(order)
        jobs.append(
            {"provider": provider, "order": order, "idempotency_key": tag, "not_before": not_before, "natural": natural}
        )
    return jobs


class Drill:
    """The servers, the processes and the schedule of one run."""

    def __init__(self, h: Harness, redis_server: RedisServer, postgres: PostgresServer, report: Report, rng):
        self.h, self.redis, self.postgres, self.report, self.rng = h, redis_server, postgres, report, rng
        self.workers: list = []
        self.frozen: set[int] = set()  # pids under SIGSTOP: never the victim of a kill or another freeze
        self.later: list[threading.Thread] = []  # damage still under way: frozen workers' wake-ups, the flush
        self.lock = threading.Lock()  # the workers list: the damage thread and the drill's own loop share it
        self.durability = "always"
        self.last_damage = time.monotonic()
        self.sent = threading.Event()  # every job submitted
        self.sent_count = 0
        self.hold = 0.0  # the sender sends no job from this index on until the damage due there has landed (set by
        # run_schedule as it begins)
        self.started = time.monotonic()  # when the damage began (run_schedule's start)
        self.sending_seconds = 0.0  # how long sending every job took, once it is done

    def start_worker(self, wait: bool) -> None:
        proc = self.h.worker(f"chaos-{len(self.h.started)}", concurrency=32, wait=wait)
        with self.lock:
            self.workers.append(proc)

    def _victim(self, wait: float = 30.0):
        """A live worker that is not frozen (waiting a while for one: the others may all be frozen)."""
        deadline = time.monotonic() + wait
        while True:
            with self.lock:
                alive = [w for w in self.workers if w.alive() and w.popen.pid not in self.frozen]
            if alive or time.monotonic() > deadline:
                return self.rng.choice(alive) if alive else None
            time.sleep(0.2)

    def kill(self) -> None:
        victim = self._victim()
        if victim is None:
            self.report.not_delivered.append("a kill found no live worker")
            return
        self.report.kills_mid_call += bool(self._placing())
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait()
        with self.lock:
            self.workers.remove(victim)
        self.report.worker_kills += 1
        self.start_worker(wait=False)

    def freeze(self, seconds: float) -> None:
        """SIGSTOP a worker, and SIGCONT it ``seconds`` later (on a timer: the schedule goes on meanwhile)."""
        victim = self._victim()
        if victim is None:
            self.report.not_delivered.append("a freeze found no live worker")
            return
        pid = victim.popen.pid
        with self.lock:
            self.frozen.add(pid)
        os.kill(pid, signal.SIGSTOP)
        self._note("freeze (SIGSTOP)")

        def wake() -> None:
            os.kill(pid, signal.SIGCONT)
            with self.lock:
                self.frozen.discard(pid)
            self.report.worker_freezes += 1
            self.last_damage = time.monotonic()
            self._note("  ... resumed (SIGCONT)")

        timer = threading.Timer(seconds, wake)
        timer.daemon = True
        timer.start()
        self.later.append(timer)

    def restart_redis(self) -> None:
        self.redis.restart(down=1.0)
        self.report.redis_restarts[self.durability] = self.report.redis_restarts.get(self.durability, 0) + 1

    def restart_postgres(self) -> None:
        self.postgres.restart_immediately(down=1.0)
        self.report.postgres_restarts += 1

    def flush_redis(self) -> None:
        """Flush once every job is out of Redis (taken in, or lost): a flush before that would be lost jobs by
        design, not a fault the pipeline could survive."""
        deadline = time.monotonic() + 300
        while not (self.sent.is_set() and _jobs_in_redis(self.redis.url) == 0):
            if time.monotonic() > deadline:
                self.report.not_delivered.append("the flush: jobs were still waiting in Redis after 300 s")
                return
            time.sleep(0.5)
        redis.Redis.from_url(self.redis.url).flushdb()
        self.report.redis_flushes += 1
        self._note("flush")

    def _note(self, what: str) -> None:
        self.report.timeline.append(f"{time.monotonic() - self.started:7.1f} s  {what}")

    def _placing(self) -> int:
        try:
            with psycopg.connect(self.postgres.url, connect_timeout=2) as conn:
                return conn.execute("SELECT count(*) FROM orders WHERE status = 'placing'").fetchone()[0]
        except psycopg.Error:
            return 0

    def _wait_for(self, at: float, orders: int, started: float) -> None:
        """Until the fraction ``at`` of the jobs is sent (above 1: see ``schedule``)."""
        while self.sent_count < min(at, 1.0) * orders and not self.sent.is_set():
            time.sleep(0.05)
        if at > 1.0:
            self.sent.wait()
            time.sleep(max(0.0, started + self.sending_seconds * at - time.monotonic()))

    def run_schedule(self, schedule: list[tuple[float, str]], orders: int, started: float) -> None:
        """Do each damage when its share of the jobs is sent (in order; a slow one delays the next)."""
        self.started = started
        plan = sorted(schedule)
        # Each damage lands at its share of the jobs exactly: the sender waits there until it has (a kill or a
        # restart slowed by a busy machine would otherwise land later in the sending than planned, and the Redis
        # restart due in the ``always`` half could fall in the ``everysec`` one).
        holds = [at * orders if at <= 1.0 else float("inf") for at, _ in plan] + [float("inf")]
        self.hold = holds[0]
        for index, (at, action) in enumerate(plan):
            self._wait_for(at, orders, started)
            try:
                if action == "kill":
                    self.kill()
                elif action == "freeze":
                    self.freeze(float(SETTINGS["lease_seconds"]) + 3)
                elif action == "redis":
                    self.restart_redis()
                elif action == "postgres":
                    self.restart_postgres()
                elif action == "flush":  # on its own: it waits for every job to be a row
                    flush = threading.Thread(target=self.flush_redis, daemon=True)
                    flush.start()
                    self.later.append(flush)
            except Exception as exc:  # the drill goes on; the report says what did not happen
                self.report.not_delivered.append(f"{action} at {at:.2f} of the sending: {type(exc).__name__}: {exc}")
            if action not in ("flush", "freeze"):  # those two note their own ends
                self.last_damage = time.monotonic()
                self._note(action)
            self.hold = holds[index + 1]  # the next damage's point


def _send_all(app, vault: Vault, jobs: list[dict], rate: float, drill: Drill, submitted: dict) -> None:
    """Submit the jobs at a steady rate at most, as a producer would: a send Redis refused is sent again. Halfway,
    Redis goes from ``appendfsync always`` to ``everysec``."""
    started = time.monotonic()
    for index, job in enumerate(jobs):
        if index == len(jobs) // 2:
            drill.durability = "everysec"
            for _ in range(100):
                try:
                    drill.redis.set_appendfsync("everysec")
                    break
                except redis.RedisError:
                    time.sleep(0.2)
        while index >= drill.hold:  # a damage is due here: it lands first
            time.sleep(0.01)
        while True:
            try:
                send(
                    app,
                    vault,
                    job["provider"],
                    job["order"],
                    idempotency_key=job["idempotency_key"],
                    not_before=job["not_before"],
                )
                break
            except Exception:  # Redis is down: send it again, as a producer must
                time.sleep(0.2)
        submitted[job["idempotency_key"]] = (drill.durability, time.monotonic())
        drill.sent_count = index + 1
        time.sleep(max(0.0, started + (index + 1) / rate - time.monotonic()))
    drill.sending_seconds = time.monotonic() - started
    drill.sent.set()


def _jobs_in_redis(url: str) -> int:
    """Jobs still only in Redis: queued, reserved by a worker and not yet acknowledged, or noted by the producer
    and not yet rows (see orderrelay.core.pending)."""
    from orderrelay.core.broker import reserved

    try:
        client = redis.Redis.from_url(url, socket_timeout=3)
        queued = sum(b'"orders.submit"' in raw for raw in client.lrange("orders", 0, -1))
        held = reserved(url)
        return queued + held["jobs_before_intake"] + held["jobs_noted_not_rows"]
    except redis.RedisError:
        return -1  # Redis is away: not now


def _statuses(database_url: str, keys: list[str]) -> dict[str, str]:
    try:
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row, connect_timeout=3) as conn:
            rows = conn.execute("SELECT idempotency_key, status FROM orders WHERE idempotency_key = ANY(%s)", [keys])
            return {r["idempotency_key"]: r["status"] for r in rows}
    except psycopg.Error:  # Postgres is restarting
        return {}


def schedule(rng: random.Random, kills: int, freezes: int) -> list[tuple[float, str]]:
    """When each damage lands, as a fraction of the jobs sent (above 1: after the last send, by that fraction of
    the sending's length again): kills and freezes spread over the sending and a while after; one Redis restart in
    each half (``always``, then ``everysec``); Postgres restarted at 0.4; the flush once every job has a row."""
    span = 1.2
    plan = [(span * (n + 0.5) / kills + rng.uniform(-0.02, 0.02), "kill") for n in range(kills)]
    plan += [(span * (n + 0.7) / max(1, freezes), "freeze") for n in range(freezes)]
    plan += [(0.25, "redis"), (0.75, "redis"), (0.4, "postgres"), (1.0, "flush")]
    return [(max(0.001, at), action) for at, action in plan]


def run(
    *,
    orders: int,
    kills: int,
    freezes: int,
    workers: int,
    timeout: float,
    seed: int | None,
    out: Path | None,
    rate: float = 100.0,
) -> int:
    rng = random.Random(seed)
    report = Report(kills_asked=kills, freezes_asked=freezes)
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="orderrelay-chaos-"))
    root.chmod(0o755)
    redis_server, postgres = RedisServer(root, appendfsync="always"), PostgresServer(root / "pg")
    postgres.folder.mkdir()
    redis_server.start()
    postgres.start()
    try:
        with harness("chaos", broker_url=redis_server.url, database_url=postgres.url, **SETTINGS) as h:
            drill = Drill(h, redis_server, postgres, report, rng)
            for _ in range(workers):
                drill.start_worker(wait=True)
            h.beat()
            for provider in providers.REGISTRY:
                script = [rng.choice(FAULTS) if rng.random() < 0.25 else 200 for _ in range(orders)]
                h.admin(f"{provider}/faults", {"latency_ms": 300, "script": script})
            jobs = _jobs(h, orders, rng, uuid.uuid4().hex[:6])
            keys = [job["idempotency_key"] for job in jobs]
            from orderrelay.worker.app import app

            submitted: dict[str, tuple] = {}
            sender = threading.Thread(
                target=_send_all,
                args=(app, Vault(get_settings().fernet_keys), jobs, rate, drill, submitted),
                daemon=True,
            )
            damage_started = time.monotonic()
            damage = threading.Thread(
                target=drill.run_schedule,
                args=(schedule(rng, kills, freezes), orders, damage_started),
                daemon=True,
            )
            sender.start()
            damage.start()
            deadline = time.monotonic() + timeout
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("placing under fire", total=len(jobs))
                while time.monotonic() < deadline:
                    statuses = _statuses(h.database_url, keys)
                    done = sum(1 for s in statuses.values() if s in FINAL_STATUSES)
                    progress.update(task, completed=done)
                    busy = damage.is_alive() or sender.is_alive() or any(t.is_alive() for t in drill.later)
                    settled = done == len(statuses) and not busy
                    # every row ended, and no job is left in Redis: a job without a row now never will have one
                    if settled and (done == len(submitted) or _jobs_in_redis(redis_server.url) == 0):
                        break
                    time.sleep(0.5)
            for later in drill.later:  # a frozen worker is woken (and the flush done) before the harness stops
                later.join()
            report.seconds_to_drain = round(max(0.0, time.monotonic() - drill.last_damage), 1)
            report.sent_per_second = round(len(submitted) / max(drill.sending_seconds, 1e-3), 1)
            _account(h, report, jobs, submitted, damage_started)
            report.timeline.sort()
    finally:
        redis_server.stop()
        postgres.stop()
    report.seconds = round(time.monotonic() - started, 1)
    for asked, done, what in (
        (report.kills_asked, report.worker_kills, "kills"),
        (report.freezes_asked, report.worker_freezes, "freezes"),
    ):
        if done < asked and not any(what[:-2] in n for n in report.not_delivered):
            report.not_delivered.append(f"{asked - done} of {asked} {what} not done before the run ended")
    _print(report)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(report) | {"passed": report.passed()}, indent=2, default=str))
        console.print(f"report written to {out}")
    return 0 if report.passed() else 1


def _account(h: Harness, report: Report, jobs: list[dict], submitted: dict[str, tuple], started: float) -> None:
    keys = [job["idempotency_key"] for job in jobs]
    with psycopg.connect(h.database_url, autocommit=True, row_factory=dict_row) as conn:
        rows = {
            r["idempotency_key"]: r
            for r in conn.execute(
                "SELECT idempotency_key, status, provider_ref FROM orders WHERE idempotency_key = ANY(%s)", [keys]
            )
        }
        report.calls_cut = conn.execute(
            "SELECT count(*) AS n FROM attempts a JOIN orders o ON o.id = a.order_id "
            "WHERE o.idempotency_key = ANY(%s) AND a.error->>'message' = 'the worker was lost during the call'",
            [keys],
        ).fetchone()["n"]
    report.submitted = len(submitted)
    report.submitted_by_durability = dict(Counter(durability for durability, _ in submitted.values()))
    report.end_states = dict(Counter(r["status"] for r in rows.values()))
    made = {provider: h.admin(f"{provider}/orders", method="GET")["orders"] for provider in providers.REGISTRY}
    held: dict[str, dict[str, list[dict]]] = {}
    sandboxes = modules()
    for provider, records in made.items():
        for record in records:
            held.setdefault(provider, {}).setdefault(str(sandboxes[provider].natural(record)), []).append(record)
    for provider in providers.REGISTRY:
        report.duplicates[provider] = sum(len(v) - 1 for v in held.get(provider, {}).values() if len(v) > 1)
    for job in jobs:
        key, provider = job["idempotency_key"], job["provider"]
        there = held.get(provider, {}).get(str(job["natural"]), [])
        row = rows.get(key)
        durability, sent_at = submitted.get(key, ("never sent", started))
        if row is None:
            report.lost_before_intake.setdefault(durability, []).append(key)
            report.timeline.append(f"{sent_at - started:7.1f} s  sent {key}, never taken in")
            if there:
                report.contradictions.append({"key": key, "here": "no row", "provider_holds": len(there)})
            continue
        status = row["status"]
        if status not in FINAL_STATUSES:
            report.lost_after_intake.setdefault(durability, []).append(key)
        elif status == Status.PLACED:
            refs = {str(r[sandboxes[provider].REF_FIELD]) for r in there}
            if row["provider_ref"] not in refs:
                report.contradictions.append({"key": key, "here": "placed", "provider_holds": len(there)})
        elif status == Status.IN_DOUBT:
            report.in_doubt.append(
                {"key": key, "provider": provider, "provider_has_it": len(there) == 1, "accounted": len(there) <= 1}
            )
        elif there:  # failed, rejected or canceled here, yet the provider holds it
            report.contradictions.append({"key": key, "here": status, "provider_holds": len(there)})


def _print(report: Report) -> None:
    from rich.table import Table

    table = Table("figure", "value", title="fault drill")
    table.add_row("orders submitted (Redis took them)", str(report.submitted))
    for durability, n in sorted(report.submitted_by_durability.items()):
        table.add_row(f"  while Redis ran appendfsync {durability}", str(n))
    for status, n in sorted(report.end_states.items()):
        table.add_row(f"  ended {status}", str(n))
    for durability in sorted(report.submitted_by_durability):
        lost = len(report.lost_before_intake.get(durability, []))
        table.add_row(f"lost before intake, appendfsync {durability}", str(lost))
    for durability in sorted(report.submitted_by_durability):
        lost = len(report.lost_after_intake.get(durability, []))
        table.add_row(f"lost after intake (a row that never ended), appendfsync {durability}", str(lost))
    for provider, n in report.duplicates.items():
        table.add_row(f"duplicate orders at {provider}", str(n))
    has = sum(1 for d in report.in_doubt if d["provider_has_it"])
    table.add_row(
        "in doubt (the provider has it / has not)", f"{len(report.in_doubt)} ({has} / {len(report.in_doubt) - has})"
    )
    table.add_row("contradictions (a status the provider's orders deny)", str(len(report.contradictions)))
    table.add_row("worker kills (SIGKILL) asked / done", f"{report.kills_asked} / {report.worker_kills}")
    table.add_row("  while an order was being placed", str(report.kills_mid_call))
    table.add_row("  provider calls cut by them", str(report.calls_cut))
    table.add_row(
        "worker freezes (SIGSTOP past the lease) asked / done", f"{report.freezes_asked} / {report.worker_freezes}"
    )
    for durability, n in sorted(report.redis_restarts.items()):
        table.add_row(f"Redis SIGKILLed and restarted, appendfsync {durability}", str(n))
    table.add_row("Redis flushes", str(report.redis_flushes))
    table.add_row("PostgreSQL immediate restarts", str(report.postgres_restarts))
    table.add_row("seconds to drain after the last fault (the flush aside)", str(report.seconds_to_drain))
    table.add_row("jobs sent per second", str(report.sent_per_second))
    table.add_row("seconds", str(report.seconds))
    console.print(table)
    for note in report.not_delivered:
        console.print(f"[red]not done: {note}[/]")
    console.print("[bold green]drill passed[/]" if report.passed() else "[bold red]drill failed[/]")
