"""Scheduling lag of the processes on a delivery path, measured, for deadlines on a busy runner.

A bound like T_orphan is the system's own budget; on a loaded machine every process on the path
(the app child with its reaper and SSE server, redis-server, the fault proxy, the test's consumer
thread) also waits runnable for a CPU. Linux counts that wait per thread in
``/proc/<pid>/task/<tid>/schedstat`` (2nd field, ns). The sum over the path during the window
bounds the delay scheduling added, so ``budget + waited()`` is a deadline derived from measured lag,
and 0 is added where the kernel does not say. See docs/stream.md (harness deadlines).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def _task_waits(pid: int | str) -> dict[str, int]:
    """Run-queue wait (ns) of each thread of ``pid`` (``"self"``: this process); empty where unreadable."""
    out: dict[str, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            out[tid] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return out


def runq_wait_s(pid: int | str = "self") -> float:
    """Seconds the threads of ``pid`` have waited runnable for a CPU, summed (0.0 where the kernel does not
    say; a thread that ended meanwhile drops out, which only makes a deduction smaller)."""
    return sum(_task_waits(pid).values()) / 1e9


def _thread_wait(tid: int) -> int:
    try:
        return int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class PathLag:
    """Run-queue wait accumulated since construction by ``pids`` (every thread) and by ``threads``
    of this process. A process that exits keeps its last reading."""

    def __init__(self, pids: Iterable[int | None], threads: Iterable[threading.Thread] = ()) -> None:
        self.pids = [p for p in pids if p]
        self.tids = [t.native_id for t in threads if t.native_id is not None]
        self._start = {p: _task_waits(p) for p in self.pids}
        self._last = {p: dict(w) for p, w in self._start.items()}
        self._tstart = {t: _thread_wait(t) for t in self.tids}

    def waited(self) -> float:
        total = 0
        for p in self.pids:
            now = _task_waits(p)
            if now:
                self._last[p] = now
            start = self._start[p]
            total += sum(max(0, v - start.get(tid, 0)) for tid, v in self._last[p].items())
        total += sum(max(0, _thread_wait(t) - s) for t, s in self._tstart.items())
        return total / 1e9


def wait_within(cond: Callable[[], T], budget: float, lag: PathLag, what: str, interval: float = 0.05) -> T:
    """Poll ``cond`` until truthy, for ``budget`` seconds plus the scheduling lag measured meanwhile."""
    start = time.monotonic()
    while True:
        value = cond()
        if value:
            return value
        elapsed = time.monotonic() - start
        if elapsed > budget + lag.waited():
            raise AssertionError(f"timed out after {elapsed:.2f}s ({budget:.2f}s budget + {lag.waited():.2f}s "
                                 f"measured scheduling lag) waiting for {what}")
        time.sleep(interval)


async def wait_within_async(pred: Callable[[], object], budget: float, lag: PathLag, what: str,
                            step: float = 0.02) -> None:
    """:func:`wait_within` for a coroutine: ``pred`` (sync or async) is polled on the running loop."""
    import asyncio

    start = time.monotonic()
    while True:
        r = pred()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return
        elapsed = time.monotonic() - start
        if elapsed > budget + lag.waited():
            raise AssertionError(f"timed out after {elapsed:.2f}s ({budget:.2f}s budget + {lag.waited():.2f}s "
                                 f"measured scheduling lag) waiting for {what}")
        await asyncio.sleep(step)


def kit_lag(kit: object) -> PathLag:
    """The in-process kit's path: this process (app, relay, clients), redis-server and the fault proxy."""
    proxy = getattr(getattr(kit, "toxiproxy", None), "process", None)
    redis = getattr(kit, "proc", None)
    return PathLag([os.getpid(), getattr(redis, "pid", None), getattr(proxy, "pid", None)])
