"""One beat schedules at a time: Celery's own scheduler, ticking only while its beat holds a lock in Redis.

A second beat (started by mistake, or as a standby) waits; it takes over within ``TTL`` seconds when the first one
stops (at once: the first releases the lock as it stops) or dies. Celery's PersistentScheduler keeps the schedule
itself, in beat's file, so a Redis restarted or flushed costs no entry: the lock is taken again on the next tick.
(celery-redbeat keeps its schedule in Redis: the fault drill's flush lost it, and a restart stopped its beat.)
The lock is one key, set with an owner token and renewed by one atomic script on every tick.
"""

from __future__ import annotations

import contextlib
import logging
import uuid

import redis
from celery.beat import PersistentScheduler

log = logging.getLogger("orderrelay.beat")

KEY = "orderrelay:beat:lock"
TTL = 30.0  # seconds a silent beat keeps the lock
# Renew the lock if it is ours, else take it if it is free: 1 when this beat holds it now.
HOLD = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('pexpire', KEYS[1], ARGV[2])
    return 1
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 1
end
return 0
"""
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class LockedScheduler(PersistentScheduler):
    """PersistentScheduler under the beat lock (``beat_scheduler`` when the broker is Redis)."""

    def setup_schedule(self) -> None:
        super().setup_schedule()
        self.owner = uuid.uuid4().hex
        self.redis = redis.Redis.from_url(self.app.conf.broker_url, socket_timeout=5, socket_connect_timeout=5)
        self.holding: bool | None = None

    def tick(self, *args, **kwargs) -> float:
        if not self._hold():
            return TTL / 6
        return min(super().tick(*args, **kwargs), TTL / 3)

    def _hold(self) -> bool:
        try:
            held = bool(self.redis.eval(HOLD, 1, KEY, self.owner, int(TTL * 1000)))
        except redis.RedisError as exc:
            held, why = False, f"Redis cannot be reached ({type(exc).__name__}); scheduling nothing until it can"
        else:
            why = "another beat holds the schedule lock; standing by" if not held else "holds the schedule lock"
        if held != self.holding:
            (log.info if held else log.warning)("beat %s: %s", self.owner[:8], why)
            self.holding = held
        return held

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError):  # else the lock runs out by itself
            self.redis.eval(RELEASE, 1, KEY, self.owner)
        super().close()
