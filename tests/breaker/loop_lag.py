"""Event-loop lag that the loop itself caused, measured: time it spent outside its selector after a tick
was due, less the time the process's threads waited for a CPU meanwhile.

A 10 ms ticker's wall lag on a busy runner has three parts. (1) Run-queue wait: a thread of the process
sat runnable while another process had the CPU (the loop thread itself, or another thread that held the
GIL while it waited); Linux counts it per thread in ``/proc/self/task/<tid>/schedstat`` (2nd field, ns).
(2) A late wake inside ``epoll_wait``: the loop is asleep in its selector, its timer is due, and the
kernel wakes it late. On this 2-vCPU VM under load 20 that was 10-39 ms per tick, with the loop's CPU
time <= 1 ms, no GC, no other thread on a CPU, and no run-queue wait counted for it (docs/breaker.md,
CB-27): taking out run-queue wait alone left it in, and read it as the loop's own lag. (3) What the loop
did: callbacks running late, and blocking calls (a sync ``recv`` sleeps, so it is never run-queue wait).
Only (3) is the loop's, so the selector is timed (:class:`TimedSelector`, the loop made by :func:`run`)
and a tick's own lag is the time from its due time to its end that the loop spent outside ``select``,
less the run-queue wait over those stretches. A blocking call is outside ``select`` and stays counted.
"""

from __future__ import annotations

import asyncio
import selectors
import time
import weakref
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from tests.stream.sched_lag import runq_wait_s

__all__ = ["TimedSelector", "loop_lags", "own_lag", "p99", "run", "runq_wait_s", "wait_at_last_select_exit"]
T = TypeVar("T")
Span = tuple[float, float, float, float]  # (enter time, run-queue wait at enter, exit time, wait at exit)


class TimedSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The default selector, with each ``select`` call's span and the process's run-queue wait at both
    ends recorded (loop time is ``time.monotonic``), so the loop's time asleep in the kernel can be told
    from its time in callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[Span] = []
        self.exit_wait: float | None = None  # the run-queue wait at the last select's exit (never cleared)

    def select(self, timeout: float | None = None) -> list[Any]:
        t, w = time.monotonic(), runq_wait_s()
        try:
            return super().select(timeout)
        finally:  # after the GIL is back: waiting for it on the way out is not the loop's own work
            self.exit_wait = runq_wait_s()
            self.spans.append((t, w, time.monotonic(), self.exit_wait))


_SELECTORS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimedSelector]" = weakref.WeakKeyDictionary()


def _timed_loop() -> asyncio.AbstractEventLoop:
    sel = TimedSelector()
    loop = asyncio.SelectorEventLoop(sel)
    _SELECTORS[loop] = sel
    return loop


def run(main: Coroutine[Any, Any, T], debug: bool = False) -> T:
    """``asyncio.run(main, debug=debug)`` on a loop whose selector is timed (needed by :func:`loop_lags`)."""
    with asyncio.Runner(debug=debug, loop_factory=_timed_loop) as runner:
        return runner.run(main)


def wait_at_last_select_exit() -> float | None:
    """The process's run-queue wait when the running loop last left ``select`` (None: not a loop of
    :func:`run`): the callbacks of the loop's current iteration all ran after that reading."""
    try:
        sel = _SELECTORS.get(asyncio.get_running_loop())
    except RuntimeError:  # logged outside a running loop
        return None
    return None if sel is None else sel.exit_wait


def _stretch(start: float, w_start: float, end: float, w_end: float, due: float) -> float:
    """Own time in one stretch outside ``select``: its part after ``due`` less the run-queue wait in it."""
    after = end - max(start, due)
    return max(0.0, after - (w_end - w_start)) if after > 0 else 0.0


def own_lag(t0: float, w0: float, t1: float, w1: float, due: float, spans: list[Span]) -> float:
    """The loop's own lag in a tick from ``t0`` (wait ``w0``) to ``t1`` (``w1``) due at ``due``: the
    stretches between the ``select`` ``spans`` made inside the tick, each counted after ``due`` and less
    its run-queue wait (the wait inside a stretch before ``due`` is taken too: a smaller lag, never a
    blocking call hidden, which sleeps and is not run-queue wait)."""
    own, start, w_start = 0.0, t0, w0
    for enter, w_enter, leave, w_leave in spans:
        own += _stretch(start, w_start, enter, w_enter, due)
        start, w_start = leave, w_leave
    return own + _stretch(start, w_start, t1, w1, due)


async def loop_lags(workload: Callable[[], Awaitable[Any]], period: float = 0.01,
                    marks: list[float] | None = None) -> tuple[Any, list[float], float]:
    """Run ``await workload()`` beside a ``period`` ticker on a loop made by :func:`run`; returns its
    result, the ticks' own lags (sorted, see :func:`own_lag`) and the total wall lag not counted as own
    (run-queue wait and late wakes in ``select``). ``marks`` gets the process's run-queue wait as read at
    each tick (a later reading minus the last mark bounds the wait of whatever ran in between)."""
    loop = asyncio.get_running_loop()
    sel = _SELECTORS.get(loop)
    if sel is None:
        raise RuntimeError("loop_lags needs the timed loop of loop_lag.run(): a late wake in select "
                           "can not be told from the loop's own lag without it")
    lags: list[float] = []
    deducted = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal deducted
        while not stop.is_set():
            t, w, first = loop.time(), runq_wait_s(), len(sel.spans)
            if marks is not None:
                marks.append(w)
            await asyncio.sleep(period)
            t1, w1 = loop.time(), runq_wait_s()
            own = own_lag(t, w, t1, w1, t + period, sel.spans[first:])
            deducted += max(0.0, t1 - t - period - own)
            lags.append(own)
            del sel.spans[:]  # only the spans of the current tick are read
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker is running before the workload starts
    try:
        result = await workload()
    finally:
        stop.set()
        await tick
    return result, sorted(lags), deducted


def p99(lags: list[float]) -> float:
    return lags[max(0, -(-len(lags) * 99 // 100) - 1)] if lags else float("inf")
