"""``orderrelay bench``: orderrelay's throughput, latency, CPU and memory, measured against the engine it runs
on (bare Celery no-op tasks drained by the same worker layout) and against the naive design, in one run.

Every figure comes from one run on this machine; compare the ratios, not absolute numbers across machines.
A run in which any order failed, or any order was made twice at the sandbox, reports nothing.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg
import redis
from rich.progress import Progress
from rich.table import Table

from config.settings import get_settings
from orderrelay.harness import Harness, console, harness
from orderrelay.producer import send
from orderrelay.vault import Vault
from sandbox.samples import extend_order


@dataclass
class Run:
    """One measured run."""

    name: str
    orders: int
    seconds: float
    per_second: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms_per_order: float | None = None
    peak_rss_mb: float | None = None


@dataclass
class Report:
    layout: str
    runs: list[Run] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)


class Meter:
    """CPU seconds of every process that works on orders, and the peak RSS of the worker processes."""

    def __init__(self, workers: list[psutil.Process]):
        names = ("postgres", "redis-server")
        self.workers = workers
        self.others = [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "") in names]
        self.others.append(psutil.Process())  # the producer: this process
        self.start = self._cpu()
        self.peak_rss = 0

    def _procs(self):
        for proc in [*self.workers, *self.others]:
            yield proc
            yield from proc.children(recursive=True) if proc in self.workers else ()

    def _cpu(self) -> float:
        total = 0.0
        for proc in self._procs():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def sample(self) -> None:
        for proc in self.workers:
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)

    def cpu_seconds(self) -> float:
        return self._cpu() - self.start


def _drain_noop(h: Harness, count: int, workers: int, concurrency: int) -> Run:
    from tasks.bench import noop

    queue = f"bench-{uuid.uuid4().hex[:6]}"
    procs = [h.worker(f"noop-{n}", concurrency=concurrency, queues=(queue,), quiet=True) for n in range(workers)]
    broker = redis.Redis.from_url(h.broker_url)
    started = time.monotonic()
    for _ in range(count):
        noop.apply_async(queue=queue)
    time.sleep(0.05)
    while broker.llen(queue) or broker.hlen("unacked"):
        time.sleep(0.01)
    seconds = time.monotonic() - started
    for proc in procs:
        proc.stop()
        h.started.remove(proc)
    return Run("bare Celery no-op", count, round(seconds, 2), round(count / seconds, 1))


def _orders(h: Harness, name: str, count: int, latency_ms: int, pids: list[int], naive: bool = False) -> Run:
    h.admin("reset")
    h.admin("extend/faults", {"latency_ms": latency_ms})
    run_id = uuid.uuid4().hex[:6]
    orders = [extend_order(f"bench-{run_id}-{i}") for i in range(count)]
    meter = Meter([psutil.Process(pid) for pid in pids])
    vault = Vault(get_settings().fernet_keys)
    from tasks.bench import naive_place
    from worker.app import app

    submitted: dict[str, float] = {}
    with Progress(console=console, transient=True) as progress, psycopg.connect(h.database_url) as conn:
        task = progress.add_task(f"{name}", total=count)
        first = time.time()
        for i, order in enumerate(orders):
            key = f"bench-{run_id}-{i}"
            submitted[key] = time.time()
            if naive:
                naive_place.apply_async(("extend", order), queue="bench-naive")
            else:
                send(app, vault, "extend", order, idempotency_key=key)
            if i % 200 == 0:
                meter.sample()
        done = 0
        while done < count:
            time.sleep(0.2)
            meter.sample()
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'placed'), count(*) FILTER (WHERE status IN "
                "('failed', 'in_doubt', 'rejected')), max(placed_at) FROM orders WHERE request->>'transactionId' "
                "LIKE %s",
                [f"bench-{run_id}-%"],
            ).fetchone()
            done, bad, last = row
            progress.update(task, completed=done)
            if bad:
                raise SystemExit(f"{name}: {bad} order(s) did not get placed; no figures are reported")
        rows = conn.execute(
            "SELECT request->>'transactionId', placed_at FROM orders WHERE request->>'transactionId' LIKE %s",
            [f"bench-{run_id}-%"],
        ).fetchall()
    made = h.admin("extend/orders", method="GET")["count"]
    if made != count:
        raise SystemExit(f"{name}: the sandbox made {made} orders for {count} submitted; no figures are reported")
    seconds = last.timestamp() - first
    latencies = sorted((placed.timestamp() - submitted[tx]) * 1000 for tx, placed in rows if tx in submitted)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return Run(
        name,
        count,
        round(seconds, 2),
        round(count / seconds, 1),
        p50_ms=round(quantiles[49], 1),
        p95_ms=round(quantiles[94], 1),
        p99_ms=round(quantiles[98], 1),
        cpu_ms_per_order=round(meter.cpu_seconds() * 1000 / count, 2),
        peak_rss_mb=round(meter.peak_rss / 2**20, 1),
    )


def run(*, orders: int, naive_orders: int, workers: int, concurrency: int, out_dir: Path) -> int:
    report = Report(layout=f"{workers} worker processes x threads -c {concurrency}")
    with harness(
        "bench", log_level="WARNING", sweep_interval="30", lease_seconds="120", db_pool_size="16", max_in_flight="10000"
    ) as h:
        report.runs.append(_drain_noop(h, orders, workers, concurrency))
        procs = [h.worker(f"bench-{n}", concurrency=concurrency, quiet=True) for n in range(workers)]
        pids = [p.popen.pid for p in procs]
        for latency in (0, 50, 200):
            report.runs.append(_orders(h, f"orderrelay, provider at {latency} ms", orders, latency, pids))
        for proc in procs:
            proc.stop()
            h.started.remove(proc)
        naive = [
            h.worker(f"naive-{n}", concurrency=2, pool="prefork", queues=("bench-naive",), quiet=True)
            for n in range(workers)
        ]
        report.runs.append(
            _orders(h, "naive, provider at 200 ms", naive_orders, 200, [p.popen.pid for p in naive], naive=True)
        )
    by = {r.name: r for r in report.runs}
    bare, o0, o200, naive200 = (
        by["bare Celery no-op"],
        by["orderrelay, provider at 0 ms"],
        by["orderrelay, provider at 200 ms"],
        by["naive, provider at 200 ms"],
    )
    report.ratios = {
        "orderrelay at 0 ms / bare Celery no-op": round(o0.per_second / bare.per_second, 2),
        "orderrelay at 200 ms / orderrelay at 0 ms": round(o200.per_second / o0.per_second, 2),
        "orderrelay / naive, at 200 ms": round(o200.per_second / naive200.per_second, 1),
    }
    _print(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(asdict(report), indent=2))
    console.print(f"figures written to {path}")
    return 0


def _print(report: Report) -> None:
    table = Table(
        "run",
        "orders",
        "seconds",
        "per second",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "CPU ms/order",
        "peak RSS MB/worker",
        title=f"orderrelay bench ({report.layout})",
    )
    for r in report.runs:
        table.add_row(
            r.name,
            str(r.orders),
            str(r.seconds),
            str(r.per_second),
            *("" if v is None else str(v) for v in (r.p50_ms, r.p95_ms, r.p99_ms, r.cpu_ms_per_order, r.peak_rss_mb)),
        )
    console.print(table)
    for name, value in report.ratios.items():
        console.print(f"{name}: [bold]{value}[/]")
