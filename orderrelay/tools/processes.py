"""Start orderrelay's processes as real child processes (the sandbox, a Celery worker, beat) and wait for them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path


class Process:
    """A child process with its log file; stopped with SIGTERM, then killed if it will not go."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.popen = subprocess.Popen(
            argv, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        """Wait until the log shows ``text``; raise with the log's tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if not self.alive():
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready ({text!r}); its log ends:\n{self.log()[-3000:]}")


def sandbox(env: Mapping[str, str], port: int, log_dir: Path) -> Process:
    proc = Process(
        "sandbox",
        [sys.executable, "-m", "orderrelay.cli", "sandbox", "--port", str(port)],
        env,
        log_dir / "sandbox.log",
    )
    return _answering(proc, f"http://127.0.0.1:{port}/_sandbox/health")


def _answering(proc: Process, url: str, timeout: float = 30.0) -> Process:
    """Wait until ``url`` answers; stop the process and raise with its log's tail if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc
        except OSError:
            if not proc.alive():
                break
            time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"{proc.name} did not start; its log ends:\n{proc.log()[-3000:]}")


def worker(
    env: Mapping[str, str],
    log_dir: Path,
    *,
    name: str = "worker",
    concurrency: int = 64,
    pool: str = "threads",
    queues: tuple[str, ...] = (),
    quiet: bool = False,
    include: tuple[str, ...] = (),
    wait: bool = True,
) -> Process:
    """A Celery worker serving ``queues`` (by default every queue the configuration declares); ``quiet`` logs
    warnings only (no line per task), as a benchmark wants; ``include`` names task modules beyond orderrelay's own
    (the benchmark's)."""
    proc = Process(
        name,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "orderrelay.worker.app",
            "worker",
            "--pool",
            pool,
            "-c",
            str(concurrency),
            "-E",
            *(("-Q", ",".join(queues)) if queues else ()),
            "-n",
            f"{name}-{os.getpid()}@%h",
            "--loglevel",
            "WARNING" if quiet else "INFO",
            "--without-mingle",
            "--without-gossip",
            *(["--include", ",".join(include)] if include else []),
        ],
        env,
        log_dir / f"{name}.log",
    )
    if wait:
        proc.wait_for("orderrelay worker ready", timeout=60)
    return proc


def beat(env: Mapping[str, str], log_dir: Path) -> Process:
    proc = Process(
        "beat",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "orderrelay.worker.app",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(log_dir / "beat-schedule"),
            "--pidfile",
            "",
        ],
        env,
        log_dir / "beat.log",
    )
    proc.wait_for("beat: Starting", timeout=60)
    return proc


def environment(broker_url: str, database_url: str, sandbox_port: int, **overrides: str) -> dict[str, str]:
    """The process environment for orderrelay processes that talk to the sandbox's providers."""
    from cryptography.fernet import Fernet

    from orderrelay.sandbox.app import provider_environment

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERRELAY_")}
    env.update(
        ORDERRELAY_BROKER_URL=broker_url,
        ORDERRELAY_DATABASE_URL=database_url,
        ORDERRELAY_FERNET_KEYS=os.environ.get("ORDERRELAY_FERNET_KEYS") or Fernet.generate_key().decode(),
        PYTHONUNBUFFERED="1",
    )
    env.update(provider_environment(sandbox_port))
    env["ORDERRELAY_NOTIFY_SECRET"] = "sandbox-notify-secret-0123456789"  # noqa: S105 - the sandbox's
    env["ORDERRELAY_NOTIFY_ALLOW_HTTP"] = "true"  # the sandbox's receiver listens on plain http
    env["ORDERRELAY_NOTIFY_ALLOW_HOSTS"] = "127.0.0.1"  # ... on this machine: an internal receiver, allowed by name
    env["ORDERRELAY_NOTIFY_TASKS"] = "checkout.order_outcome=checkout"  # the tests' Celery-task target
    env.update({f"ORDERRELAY_{k.upper()}": v for k, v in overrides.items()})
    return env


def api(env: Mapping[str, str], port: int, log_dir: Path) -> Process:
    """The HTTP intake API on ``port``, once its health check answers."""
    proc = Process(
        "api", [sys.executable, "-m", "orderrelay.cli", "api", "--port", str(port)], env, log_dir / "api.log"
    )
    return _answering(proc, f"http://127.0.0.1:{port}/healthz")


def flower(env: Mapping[str, str], port: int, log_dir: Path) -> Process:
    """Flower on ``port`` (basic auth from FLOWER_BASIC_AUTH in ``env``), once it answers."""
    proc = Process(
        "flower",
        [sys.executable, "-m", "orderrelay.cli", "flower", "--port", str(port), "--address", "127.0.0.1"],
        env,
        log_dir / "flower.log",
    )
    proc.wait_for("Visit me at", timeout=60)
    return proc
