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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
import redis
from rich.progress import Progress
from rich.table import Table

from orderrelay.producer import producer, submit_order
from orderrelay.sandbox.samples import extend_order
from orderrelay.tools.harness import Harness, console, harness


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
    machine_busy_pct: float | None = None  # of all cores, over the run
    in_flight_peak: int | None = None  # the most create-order calls the sandbox was answering at once


@dataclass
class Report:
    layout: str
    runs: list[Run] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)


class Meter:
    """CPU seconds of every process that works on orders (the workers and their children, Postgres, Redis and
    this process, which sends the jobs), and the peak RSS of the worker processes. Postgres backends that start
    during the run count from their start."""

    def __init__(self, workers: list[psutil.Process]):
        self.workers = workers
        self.start = self._cpu()
        self.peak_rss = 0

    def _procs(self):
        yield psutil.Process()
        for proc in self.workers:
            yield proc
            with contextlib.suppress(psutil.Error):
                yield from proc.children(recursive=True)
        yield from (p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "redis-server"))

    def _cpu(self) -> dict[int, float]:
        seen = {}
        for proc in self._procs():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                seen[proc.pid] = times.user + times.system
        return seen

    def sample(self) -> None:
        for proc in self.workers:
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)

    def cpu_seconds(self) -> float:
        return sum(used - self.start.get(pid, 0.0) for pid, used in self._cpu().items())


def _drain_noop(h: Harness, count: int, workers: int, concurrency: int) -> Run:
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    procs = [
        h.worker(f"noop-{n}", concurrency=concurrency, queues=(queue,), quiet=True, include=BENCH_TASKS)
        for n in range(workers)
    ]
    broker = redis.Redis.from_url(h.broker_url)
    app, _ = producer()
    started = time.monotonic()
    for _ in range(count):
        app.send_task("bench.noop", queue=queue)
    time.sleep(0.05)
    while broker.llen(queue) or broker.hlen("unacked"):
        time.sleep(0.01)
    seconds = time.monotonic() - started
    h.stop(*procs)
    return Run("bare Celery no-op", count, round(seconds, 2), round(count / seconds, 1))


def _machine_busy() -> tuple[float, float]:
    times = psutil.cpu_times()
    total = sum(times)
    return total, total - times.idle - getattr(times, "iowait", 0.0)


def _orders(
    h: Harness,
    name: str,
    count: int,
    latency_ms: int,
    pids: list[int],
    *,
    naive: bool = False,
    rate: float | None = None,
) -> Run:
    """Send ``count`` Extend orders (as fast as the producer can, or at ``rate`` per second) and wait until every
    one is placed; figures from the orders' rows in Postgres and from the sandbox's count."""
    h.admin("reset")
    h.admin("extend/faults", {"latency_ms": latency_ms})
    prefix = f"bench-{uuid.uuid4().hex[:6]}-"
    keys = [f"{prefix}{i}" for i in range(count)]
    orders = [extend_order(key) for key in keys]
    meter = Meter([psutil.Process(pid) for pid in pids])
    app, _ = producer()
    busy_before = _machine_busy()
    mine = "FROM orders WHERE created_at >= %(since)s AND idempotency_key LIKE %(prefix)s"
    args = {"since": datetime.now(UTC) - timedelta(seconds=5), "prefix": prefix + "%"}
    submitted: dict[str, float] = {}
    progress = Progress(console=console, transient=True)
    with progress, psycopg.connect(h.database_url, autocommit=True) as conn:
        task = progress.add_task(name, total=count)
        first = time.time()
        for i, (key, order) in enumerate(zip(keys, orders, strict=True)):
            if rate:
                time.sleep(max(0.0, first + i / rate - time.time()))
            submitted[key] = time.time()
            if naive:
                app.send_task("bench.naive_place", ("extend", order, key), queue="bench-naive")
            else:
                submit_order("extend", order, idempotency_key=key)  # as checkout code sends it
            if i % 200 == 0:
                meter.sample()
                progress.update(task, description=f"{name}: sending {i}/{count}")
        progress.update(task, description=name)
        done = 0
        while done < count:
            time.sleep(0.25)
            meter.sample()
            done, bad, last = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'placed'), "
                f"count(*) FILTER (WHERE status IN ('failed', 'in_doubt', 'rejected')), max(placed_at) {mine}",
                args,
            ).fetchone()
            progress.update(task, completed=done)
            if bad:
                raise SystemExit(f"{name}: {bad} order(s) did not get placed; no figures are reported")
        rows = conn.execute(f"SELECT idempotency_key, placed_at {mine}", args).fetchall()
    total, busy = (after - before for after, before in zip(_machine_busy(), busy_before, strict=True))
    sandbox = h.admin("extend/orders", method="GET")
    made = sandbox["count"]
    if made != count:
        raise SystemExit(f"{name}: the sandbox made {made} orders for {count} submitted; no figures are reported")
    seconds = last.timestamp() - first
    latencies = sorted((placed.timestamp() - submitted[key]) * 1000 for key, placed in rows)
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
        machine_busy_pct=round(100 * busy / total, 0) if total else None,
        in_flight_peak=sandbox["in_flight_peak"],
    )


BENCH_TASKS = ("orderrelay.tasks.bench",)  # the no-op and the naive task: loaded by the bench's own workers only
HALF_RATE = "orderrelay at half that peak rate, provider at 200 ms"
CAPACITY = "one worker, provider at 1000 ms (calls in flight)"


def run(
    *, orders: int, naive_orders: int, workers: int, concurrency: int, out_dir: Path, limit: str | None = None
) -> int:
    """The runs; with ``limit`` (``100000/second``) Extend's calls go through a shared rate limit and a ceiling of
    calls in flight (never reached: what the limiter costs, not what it holds back)."""
    layout = f"{workers} worker processes x threads -c {concurrency}" + (
        f", Extend limited to {limit}" if limit else ""
    )
    report = Report(layout=layout)
    limits = {"rate_limits": f"extend={limit}", "concurrency_limits": "extend=100000"} if limit else {}
    with harness("bench", log_level="WARNING", **limits) as h:  # the default settings; workers log warnings only
        report.runs.append(_drain_noop(h, orders, workers, concurrency))
        procs = [h.worker(f"bench-{n}", concurrency=concurrency, quiet=True) for n in range(workers)]
        pids = [p.popen.pid for p in procs]
        _orders(h, "warming up (not reported)", min(orders, 500), 0, pids)  # pools filled, statements prepared
        for latency in (0, 50, 200):
            report.runs.append(_orders(h, f"orderrelay, provider at {latency} ms", orders, latency, pids))
        half = report.runs[-1].per_second / 2
        report.runs.append(_orders(h, HALF_RATE, min(orders, max(100, int(half * 20))), 200, pids, rate=half))
        h.stop(*procs[1:])  # what one process holds in flight, and its memory then
        report.runs.append(_orders(h, CAPACITY, min(orders, 2 * concurrency), 1000, pids[:1]))
        h.stop(procs[0])
        naive = [
            h.worker(
                f"naive-{n}", concurrency=2, pool="prefork", queues=("bench-naive",), quiet=True, include=BENCH_TASKS
            )
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
        "orderrelay at 0 ms / bare Celery no-op (target >= 0.5)": round(o0.per_second / bare.per_second, 2),
        "orderrelay at 200 ms / orderrelay at 0 ms (target >= 0.8)": round(o200.per_second / o0.per_second, 2),
        "orderrelay / naive, at 200 ms (target >= 20)": round(o200.per_second / naive200.per_second, 1),
        "p99 at half the peak rate minus the provider's 200 ms, in ms (target <= 100)": round(
            by[HALF_RATE].p99_ms - 200, 1
        ),
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
        "machine busy %",
        "calls in flight (peak)",
        title=f"orderrelay bench ({report.layout})",
    )
    for r in report.runs:
        figures = (r.orders, r.seconds, r.per_second, r.p50_ms, r.p95_ms, r.p99_ms, r.cpu_ms_per_order)
        figures += (r.peak_rss_mb, r.machine_busy_pct, r.in_flight_peak)
        table.add_row(r.name, *("" if v is None else str(v) for v in figures))
    console.print(table)
    for name, value in report.ratios.items():
        console.print(f"{name}: [bold]{value}[/]")
