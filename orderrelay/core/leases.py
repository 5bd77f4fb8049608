"""The claims a worker process holds, kept alive while their calls are in flight.

A claim's lease (``ORDERRELAY_LEASE_SECONDS``) is renewed every third of it, for every claim the process holds,
in one statement. A process that is frozen (SIGSTOP, a long pause) or cut off from Postgres renews nothing, so
its claims run out and the sweep takes them back. Every write under a claim is fenced by its token in SQL, the
mark written right before a create request goes out among them (``orderrelay.core.pipeline``'s fence), so a worker
that lost its claim neither sends nor records an outcome as if it still held it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from orderrelay.store import orders as store
from orderrelay.store.db import make_pool

log = logging.getLogger("orderrelay.core.leases")


@dataclass
class Held:
    """One claim this process holds: its order, its token, and when its lease ends as far as this process knows."""

    order_id: uuid.UUID
    token: uuid.UUID
    expires: float  # time.monotonic()
    lost: bool = False


class Leases:
    """The claims of one process, renewed by a thread of their own."""

    def __init__(self, db: Any, lease: float, also: Any = None):
        self.db = db
        self.lease = lease
        self.also = also  # renewed with the claims, at each tick: the seats of the calls in flight
        self._held: dict[uuid.UUID, Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orderrelay-leases", daemon=True)
        self._thread.start()

    def hold(self, order_id: uuid.UUID, token: uuid.UUID, since: float) -> Held:
        """Keep a claim made at ``since`` (monotonic, taken before the claiming statement) alive from now on."""
        held = Held(order_id, token, since + self.lease)
        with self._lock:
            self._held[order_id] = held
        return held

    def release(self, held: Held) -> None:
        with self._lock:
            if self._held.get(held.order_id) is held:
                del self._held[held.order_id]

    def renew(self, claims: list[Held]) -> None:
        """Extend these claims' leases in one statement; a claim that was taken is marked lost."""
        start = time.monotonic()
        with self.db.connection(timeout=self.lease / 3) as conn:
            kept = store.renew_leases(conn, [(h.order_id, h.token) for h in claims], lease=self.lease)
        for held in claims:
            if held.order_id in kept:
                held.expires = start + self.lease
            else:
                held.lost = True

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 3):
            if self.also is not None:
                try:
                    self.also()
                except Exception:
                    log.warning("could not renew the calls' seats", exc_info=True)
            with self._lock:
                claims = [h for h in self._held.values() if not h.lost]
            if not claims:
                continue
            try:
                self.renew(claims)
            except Exception:
                log.warning("could not renew %d claim(s); they run out if this goes on", len(claims), exc_info=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Marks:
    """The writes that stand between a provider's turn and its create request (the mark that it goes out now, and
    taking it back after a 401), on two connections and two threads of their own: so that they wait for neither the
    process's pool, which its task threads may all be using, nor the loop's executor, which slow work may fill. What
    such a write takes is all that can bring two requests closer than the rate's spacing."""

    def __init__(self, database_url: str):
        self.db = make_pool(database_url, 2)
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="orderrelay-marks")

    async def write(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            with self.db.connection() as conn:
                return statement(conn, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.db.close()
