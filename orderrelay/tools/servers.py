"""A Redis and a PostgreSQL server of the drill's (and the tests') own, to kill and restart: never the machine's.

``RedisServer`` runs ``redis-server`` with its append-only file (``appendfsync`` always or everysec) and can be
SIGKILLed and started again from that file on the same port. ``PostgresServer`` makes a data folder with
``initdb`` and can be stopped with an immediate shutdown (in-flight transactions aborted, every connection
reset, crash recovery at the next start) and started again. Run as root, PostgreSQL runs as the ``postgres``
user, as it insists.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import redis

from orderrelay.tools.embedded import free_port


def _wait(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


class RedisServer:
    """redis-server on a port of its own, its data (the append-only file) in ``folder``."""

    def __init__(self, folder: Path, appendfsync: str = "always"):
        self.folder = folder
        self.port = free_port()
        self.appendfsync = appendfsync
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        argv += ["--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "", "--maxmemory-policy"]
        argv += ["noeviction", "--logfile", str(self.folder / "redis.log")]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        _wait(lambda: redis.Redis.from_url(self.url, socket_connect_timeout=1).ping(), "redis-server")

    def set_appendfsync(self, value: str) -> None:
        """Change the durability of the running server (and of its next starts)."""
        self.appendfsync = value
        redis.Redis.from_url(self.url).config_set("appendfsync", value)

    def kill(self) -> None:
        """SIGKILL: what the last second of writes survives depends on ``appendfsync``."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def restart(self, down: float = 0.0) -> None:
        """Kill the server, stay down ``down`` seconds, start it again from its append-only file."""
        self.kill()
        time.sleep(down)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None


def _postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed here")
    return found


class PostgresServer:
    """A PostgreSQL server in a data folder of its own, on a port of its own, trusting local connections."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.restarts = 0
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if not self.data.exists():
            self.data.mkdir(parents=True)
            if self._as:  # the postgres user must reach its folder: let it through the folders above (x only)
                for above in self.folder.resolve().parents:
                    if above.stat().st_uid == 0 and not above.stat().st_mode & 0o001:
                        above.chmod(above.stat().st_mode | 0o011)
                shutil.chown(self.folder, "postgres")
                shutil.chown(self.data, "postgres")
            self._run(_postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=on"
        self._run(
            _postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.data / "log"), "-w", "start"
        )
        _wait(lambda: psycopg.connect(self.url, connect_timeout=2).close() or True, "postgres")

    def restart_immediately(self, down: float = 0.0) -> None:
        """An immediate shutdown (no checkpoint, every connection cut), then a start with crash recovery."""
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        time.sleep(down)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self._as, _postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
