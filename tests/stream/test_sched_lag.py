"""The measured-lag deadline can still fail: time a process spends sleeping (a late reaper, a
blocked call) is not run-queue wait, so it is never excused."""

from __future__ import annotations

import os
import threading
import time

import pytest
from tests.stream.sched_lag import PathLag, wait_within

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="Linux schedstat")


def test_sleep_is_not_scheduling_lag() -> None:
    lag = PathLag([os.getpid()], [threading.current_thread()])
    time.sleep(1.0)
    # only the wake-up (runnable, waiting for a CPU) counts, never the second asleep
    assert lag.waited() < 0.5, lag.waited()


def test_wait_within_fails_past_budget_plus_lag() -> None:
    lag = PathLag([], [threading.current_thread()])
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="measured scheduling lag"):
        wait_within(lambda: False, 0.3, lag, "never")
    assert time.monotonic() - t0 < 0.3 + lag.waited() + 0.5
