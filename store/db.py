"""The psycopg connection pool (one per process) and migrations (yoyo, SQL files in ``migrations/``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from yoyo import get_backend, read_migrations

MIGRATIONS = Path(__file__).with_name("migrations")


def make_pool(database_url: str, size: int) -> ConnectionPool:
    """A pool of ``size`` connections returning rows as dicts; opened at once so a bad URL fails at start-up.

    Each connection is checked as it is handed out, so a Postgres restart or cut connections cost no task.
    """
    pool = ConnectionPool(
        database_url,
        min_size=1,
        max_size=size,
        kwargs={"row_factory": dict_row},
        open=False,
        name="orderrelay",
        check=ConnectionPool.check_connection,
    )
    pool.open(wait=True, timeout=30)
    return pool


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
