"""What a worker process makes once at start-up and keeps: the event loop thread, the aiohttp session, the pool.

Tasks run in pool threads (or prefork children); provider calls run as coroutines on the one loop thread of
the process, so one process keeps hundreds of calls in flight over one connection pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
from typing import Any

import kombu.exceptions

from orderrelay.config.settings import Settings, get_settings
from orderrelay.core import pending
from orderrelay.core.leases import Leases, Marks
from orderrelay.core.limits import SharedLimits
from orderrelay.foundation.breaker import Guard
from orderrelay.foundation.vault import Vault
from orderrelay.providers.http import Http
from orderrelay.store.db import TRANSIENT_ERRORS as DATABASE_ERRORS
from orderrelay.store.db import make_pool

log = logging.getLogger("orderrelay.runtime")

# Failures of the services themselves (Postgres or the broker down, the pool exhausted): the task is sent again
# later rather than dropped, so no job is lost while a service is away.
TRANSIENT_ERRORS = (*DATABASE_ERRORS, kombu.exceptions.OperationalError)


def unreachable(settings: Settings, timeout: float = 5.0) -> str | None:
    """Why the database or the broker cannot be used right now, in one line; None when both answer."""
    import psycopg
    from kombu import Connection

    try:
        psycopg.connect(settings.database_url, connect_timeout=max(1, int(timeout))).close()
    except psycopg.Error as exc:
        return f"PostgreSQL (ORDERRELAY_DATABASE_URL) cannot be reached: {str(exc).strip().splitlines()[0]}"
    try:
        with Connection(settings.broker_url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:
        return (
            f"the broker (ORDERRELAY_BROKER_URL) cannot be reached: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        )
    return None


class Runtime:
    """One per process: settings, the psycopg pool, the claims it holds, the event loop thread and the HTTP client."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pid = os.getpid()
        self.vault = Vault(settings.fernet_keys)
        self.name = f"{socket.gethostname()}:{self.pid}"
        self.guard = Guard(
            max_in_flight=settings.max_in_flight,
            failures=settings.breaker_failures,
            cooldown=settings.breaker_cooldown,
        )
        self.db = make_pool(settings.database_url, settings.db_pool_size)
        self.limits = SharedLimits(
            settings.broker_url,
            settings.rate_limits,
            settings.concurrency_limits,
            seat_lease=settings.lease_seconds,  # renewed with the claims: a dead worker's seat frees as its claims do
            horizon=settings.countdown_horizon,
            sweep_interval=settings.sweep_interval,
        )
        self.leases = Leases(self.db, settings.lease_seconds, also=self.limits.renew_seats)
        self.marks = Marks(settings.database_url)
        self.notes = pending.client_for(settings.broker_url)  # jobs the producer noted, until they are rows
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="orderrelay-loop", daemon=True)
        self._thread.start()
        self.http: Http = self.run(self._make_http())

    async def _make_http(self) -> Http:
        return Http(self.settings, pace=self.limits.pace)  # token grants, lookups and follow-ups take turns too

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        """Run a coroutine on the process's loop and wait for its result from this thread (cancelled after
        ``timeout`` seconds, if given)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        try:
            self.run(self.http.close(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.leases.close()
            self.marks.close()
            self.db.close()


_runtime: Runtime | None = None
_lock = threading.Lock()


def current() -> Runtime:
    """The process's runtime, made on first use (and made anew in a forked child)."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        with _lock:
            if _runtime is None or _runtime.pid != os.getpid():
                _runtime = Runtime(get_settings())
                log.info("runtime ready in process %d", _runtime.pid)
    return _runtime


def shutdown() -> None:
    """Close the process's runtime, if it has one."""
    global _runtime
    with _lock:
        if _runtime is not None and _runtime.pid == os.getpid():
            _runtime.close()
        _runtime = None
