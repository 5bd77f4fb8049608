"""A second beat is harmless: only the beat holding the lock sends the schedule; the other stands by and takes
over when the first one stops."""

from __future__ import annotations

import time

import pytest

from orderrelay.tools import processes
from tests.conftest import started, wait_until

pytestmark = pytest.mark.e2e
SENT = "Sending due task sweep-due-orders"


def test_two_beats_send_the_schedule_once_and_the_second_takes_over(service_env, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()  # a log of its own each: beat.log in the session's logs holds earlier beats' lines
    first = processes.beat(service_env, tmp_path / "a")
    with started(first), started(processes.beat(service_env, tmp_path / "b")) as second:
        # ORDERRELAY_SWEEP_INTERVAL is 1 s in the tests: the holder sends a sweep every second
        wait_until(lambda: first.log().count(SENT) + second.log().count(SENT) >= 3, 30, message="sweeps sent")
        time.sleep(4)
        holder, standby = (first, second) if first.log().count(SENT) else (second, first)
        assert standby.log().count(SENT) == 0, standby.log()[-2000:]
        assert "standing by" in standby.log()
        before = holder.log().count(SENT)
        time.sleep(3)
        assert holder.log().count(SENT) >= before + 2  # still sending, alone
        holder.stop()
        wait_until(lambda: standby.log().count(SENT) >= 2, 40, message="the standby beat to take over")
        assert "holds the schedule lock" in standby.log()
