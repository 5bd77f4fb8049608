"""A whole orderrelay on this machine, for the demo, the fault drill and the benchmark.

It uses the Redis and Postgres named by ORDERRELAY_BROKER_URL / ORDERRELAY_DATABASE_URL, or starts embedded
ones, migrates the database, starts the sandbox, and starts and stops worker and beat processes on request.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from orderrelay.tools import embedded, processes

console = Console(highlight=False)


@dataclass
class Harness:
    """The services, the sandbox, and the processes started so far."""

    env: dict[str, str]
    broker_url: str
    database_url: str
    sandbox_url: str
    logs: Path
    started: list[processes.Process] = field(default_factory=list)

    def worker(self, name: str = "worker", concurrency: int = 64, pool: str = "threads", **kw) -> processes.Process:
        proc = processes.worker(self.env, self.logs, name=name, concurrency=concurrency, pool=pool, **kw)
        self.started.append(proc)
        return proc

    def stop(self, *procs: processes.Process) -> None:
        """Stop processes this harness started before it ends."""
        for proc in procs:
            proc.stop()
            self.started.remove(proc)

    def beat(self) -> processes.Process:
        proc = processes.beat(self.env, self.logs)
        self.started.append(proc)
        return proc

    def admin(self, path: str, body: dict | None = None, *, method: str = "POST") -> dict:
        """Call the sandbox's admin API."""
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(
            f"{self.sandbox_url}/_sandbox/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.load(resp)


@contextlib.contextmanager
def harness(
    name: str, *, broker_url: str | None = None, database_url: str | None = None, **settings: str
) -> Iterator[Harness]:
    """Services, migrations and the sandbox; ``settings`` are ORDERRELAY_* overrides (``sweep_interval="2"``).

    The broker and database are the ones given, else ORDERRELAY_BROKER_URL / ORDERRELAY_DATABASE_URL, else
    embedded ones. The process logs are kept in a temporary folder, printed at the end.
    """
    from orderrelay.config.settings import get_settings
    from orderrelay.store.db import migrate

    logs = Path(tempfile.mkdtemp(prefix=f"orderrelay-{name}-"))
    broker = broker_url or os.environ.get("ORDERRELAY_BROKER_URL")
    database = database_url or os.environ.get("ORDERRELAY_DATABASE_URL")
    with embedded.services(broker, database) as (broker_url, database_url, notes):
        for note in notes:
            console.print(f"[dim]using {note}[/]")
        port = embedded.free_port()
        env = processes.environment(broker_url, database_url, port, **settings)
        os.environ.update({k: v for k, v in env.items() if k.startswith("ORDERRELAY_")})
        get_settings.cache_clear()
        migrate(database_url)
        h = Harness(env, broker_url, database_url, f"http://127.0.0.1:{port}", logs)
        try:
            h.started.append(processes.sandbox(env, port, logs))
            yield h
        finally:
            for proc in reversed(h.started):
                proc.stop()
    console.print(f"[dim]process logs: {logs}[/]")
