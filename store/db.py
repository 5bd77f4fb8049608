"""The psycopg connection pool (one per process) and migrations (yoyo, SQL files in ``migrations/``)."""

from __future__ import annotations

import select
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout
from yoyo import get_backend, read_migrations

MIGRATIONS = Path(__file__).with_name("migrations")
# Postgres away, the pool exhausted, or a server that takes no writes for now (a standby not yet promoted, a primary
# demoted in a failover, a database set read-only): the work is retried later, never dropped.
TRANSIENT_ERRORS = (psycopg.OperationalError, PoolTimeout, psycopg.errors.ReadOnlySqlTransaction)
# A value Postgres will not take (a NUL in text or JSON, NaN in JSON), or psycopg cannot send (a lone surrogate): no
# retry changes it.
VALUE_ERRORS = (psycopg.DataError, UnicodeError)


def make_pool(database_url: str, size: int) -> ConnectionPool:
    """A pool of ``size`` connections returning rows as dicts; opened at once so a bad URL fails at start-up.

    Connections are in autocommit: each statement of ``orderrelay.store.queries`` is a whole state change on its own, so
    it costs one round trip, not three (BEGIN, statement, COMMIT). Code that needs several statements to hold
    together says so with ``conn.transaction()``. Each connection is checked as it is handed out (see
    ``closed_by_server``), so a Postgres restart or cut connections cost no task. One connection the server
    ended means it has most likely ended the others too (a restart, connections terminated by an operator):
    the pool is drained then, so the next checkout waits for one fresh connection rather than testing the dead
    ones one by one, which psycopg_pool spaces out 1, 2, 4, 8, 16 s apart: six dead connections used up the
    whole 30 s timeout of a checkout.
    """

    def check(conn: psycopg.Connection) -> None:
        try:
            closed_by_server(conn)
        except psycopg.OperationalError:
            pool.drain()
            raise

    pool = ConnectionPool(
        database_url,
        min_size=1,
        max_size=size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        open=False,
        name="orderrelay",
        check=check,
    )
    pool.open(wait=True, timeout=30)
    return pool


def closed_by_server(conn: psycopg.Connection) -> None:
    """Refuse a pooled connection the server has ended, without a round trip: an idle connection has nothing to
    read unless the server closed it (a restart, ``pg_terminate_backend``, an idle timeout), which leaves the
    server's last words or the end of the stream readable on its socket."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    if _readable(conn.fileno()):
        conn.close()  # so that the pool discards it and makes another, rather than offering it again
        raise psycopg.OperationalError("the server closed the connection")


def _readable(fd: int) -> bool:
    """Whether the socket has something to read (or hung up), without waiting; poll has no limit on fd numbers,
    where select refuses any above 1023, which a busy worker with hundreds of HTTP connections reaches."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


def _yoyo_url(database_url: str) -> str:
    parts = urlsplit(database_url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError("migrations need the database URL in URL form (postgresql://...)")
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def migrate(database_url: str) -> list[str]:
    """Apply the migrations not yet applied, under yoyo's lock; return their ids. Safe to run twice."""
    backend = get_backend(_yoyo_url(database_url))
    migrations = read_migrations(str(MIGRATIONS))
    with backend.lock():
        todo = backend.to_apply(migrations)
        backend.apply_migrations(todo)
    return [m.id for m in todo]
