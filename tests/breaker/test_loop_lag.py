"""loop_lag.own_lag on scripted ticks: a late wake in select is not the loop's, a blocking stretch is,
run-queue wait in a stretch is taken out; and loop_lags refuses a loop whose selector is not timed."""

from __future__ import annotations

import asyncio
import time

import pytest
from loop_lag import loop_lags, own_lag, run, runq_wait_s

DUE = 1.010  # a 10 ms tick from t0 = 1.0


def test_a_late_wake_in_select_is_not_own_lag() -> None:
    """The loop slept in select from 1.0001 to 1.040 (30 ms past due): only its 0.5 ms after is own."""
    assert own_lag(1.0, 0.0, 1.0405, 0.0, DUE, [(1.0001, 0.0, 1.040, 0.0)]) == pytest.approx(0.0005)


def test_a_blocking_callback_stays_own_lag() -> None:
    """Select returned on time at 1.010, then a callback slept 500 ms in recv (no run-queue wait)."""
    assert own_lag(1.0, 0.0, 1.511, 0.0, DUE, [(1.0001, 0.0, 1.010, 0.0)]) == pytest.approx(0.501)


def test_run_queue_wait_in_a_stretch_is_taken_out() -> None:
    """A 40 ms stretch after due, 30 ms of it runnable waiting for a CPU: 10 ms is own."""
    assert own_lag(1.0, 0.0, 1.050, 0.030, DUE, [(1.0001, 0.0, 1.010, 0.0)]) == pytest.approx(0.010)


def test_the_whole_tick_counts_without_select_spans() -> None:
    """No select call in the tick (the loop never slept): everything after due is own."""
    assert own_lag(1.0, 0.0, 1.030, 0.0, DUE, []) == pytest.approx(0.020)


BLOCK_S, PERIOD = 0.3, 0.01


def test_ticks_measured_on_the_timed_loop_catch_a_blocking_sleep() -> None:
    """End to end on the timed loop: a 300 ms time.sleep in a coroutine is one tick's own lag. The sleep may start
    up to one period before that tick was due, and what the process waited for a CPU meanwhile is taken out, so the
    tick keeps at least ``BLOCK_S - PERIOD`` less the run-queue wait measured over the run (independently of the
    measure under test: a measure that took the sleep out would leave ~0 whatever the box)."""
    async def block() -> None:
        await asyncio.sleep(0.05)
        time.sleep(BLOCK_S)
        await asyncio.sleep(0.05)

    async def main() -> list[float]:
        return (await loop_lags(block, PERIOD))[1]
    for _ in range(5):  # a run with a tenth of a second of CPU wait says little: measured again (bounded)
        w0 = runq_wait_s()
        worst = run(main())[-1]
        waited = runq_wait_s() - w0
        if waited < 0.1:
            break
    assert waited < 0.1, f"every run waited >= 0.1 s for a CPU ({waited:.3f} s): the box is too busy to judge"
    assert worst >= BLOCK_S - PERIOD - waited, (worst, waited)


def test_loop_lags_refuses_an_untimed_loop() -> None:
    async def main() -> None:
        await loop_lags(lambda: asyncio.sleep(0))
    with pytest.raises(RuntimeError, match="timed loop"):
        asyncio.run(main())
