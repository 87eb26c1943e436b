"""Event-loop lag that the loop itself caused, with the machine's scheduling lag taken out.

A 10 ms ticker's lag on a busy runner is mostly time the process's threads sat runnable in the
kernel's run queue (another process had the CPU): the loop thread itself, or another thread of the
process that held the GIL while it waited (the loop thread then sleeps on the GIL, which its own count
misses). Linux counts that time per thread in ``/proc/self/task/<tid>/schedstat`` (2nd field, ns), so each
tick's lag minus the process's run-queue wait over the same tick is what the loop's own work and blocking
calls cost: a blocking ``recv`` sleeps (not runnable) and stays counted, as long as no other thread of
the process is busy. See docs/breaker.md (CB-27).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from tests.stream.sched_lag import runq_wait_s

__all__ = ["loop_lags", "p99", "runq_wait_s"]


async def loop_lags(workload: Callable[[], Awaitable[Any]], period: float = 0.01,
                    marks: list[float] | None = None) -> tuple[Any, list[float], float]:
    """Run ``await workload()`` beside a ``period`` ticker; returns its result, the ticks' own lags
    (wall lag minus run-queue wait, sorted) and the total run-queue wait deducted. ``marks`` gets the
    process's run-queue wait as read at each tick (a later reading minus the last mark bounds the wait
    of whatever ran in between)."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    deducted = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal deducted
        while not stop.is_set():
            t, w = loop.time(), runq_wait_s()
            if marks is not None:
                marks.append(w)
            await asyncio.sleep(period)
            waited = runq_wait_s() - w
            deducted += waited
            lags.append(loop.time() - t - period - waited)
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
