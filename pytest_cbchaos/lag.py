"""Observed scheduling lag: how long a process (or an event loop) was due to run but did not.

A sampler sleeps a fixed ``interval`` and records each wake-up as the interval ``[due, woke]``
(``due`` = the previous wake-up + ``interval``). The lag of a window ``[t0, t1]`` is the sum of
the parts of those intervals inside the window (plus the current overdue wait, if any): the time
in the window during which the sampler's code was runnable and did not run. A detection judged
against a deadline subtracts it (docs/recovery.md, "Lag-aware deadlines"): the lag is observed,
never a guessed constant, and a detection that is late by more than the lag still fails.

Two drivers, one record: :meth:`LagSampler.start_thread` (a daemon thread: OS scheduling and the
GIL of the whole process) and :meth:`LagSampler.run` (an asyncio task: additionally a blocked
event loop). The record is bounded (``horizon`` seconds).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

DEFAULT_INTERVAL = 0.02


@dataclass(frozen=True)
class LagWindow:
    """Lag observed in ``[t0, t1]``: ``sum_s`` (the one deadlines subtract), ``max_s`` (worst single wake-up)."""

    t0: float
    t1: float
    sum_s: float
    max_s: float
    samples: int
    covered: bool  # the sampler ran through the whole window (else ``sum_s`` may be low)

    def to_dict(self) -> dict[str, float | int | bool]:
        return {"lag_s": round(self.sum_s, 4), "lag_max_s": round(self.max_s, 4), "lag_samples": self.samples,
                "lag_covered": self.covered}


class LagSampler:
    """Bounded record of late wake-ups; thread-safe reads."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, horizon: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0.001 <= interval <= 1.0:
            raise ValueError(f"lag sampler interval {interval!r}: expected 0.001 <= interval <= 1.0 seconds")
        self.interval = interval
        self.clock = clock
        self._late: deque[tuple[float, float]] = deque(maxlen=max(16, int(horizon / interval)))
        self._lock = threading.Lock()
        self._started_at: float | None = None
        self._due: float | None = None  # next expected wake-up; None when stopped
        self._stopped_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self.wakeups = 0

    # -- recording ---------------------------------------------------------------------------
    def note_wake(self, due: float, woke: float) -> None:
        """One wake-up; ``woke - due`` is its lag (public so scripted-clock tests can drive it)."""
        with self._lock:
            if self._started_at is None:
                self._started_at = due - self.interval
            self.wakeups += 1
            if woke > due:
                self._late.append((due, woke))
            self._due = woke + self.interval

    def _begin(self) -> float:
        now = self.clock()
        with self._lock:
            self._started_at = now if self._started_at is None else self._started_at
            self._due, self._stopped_at = now + self.interval, None
        return now

    def _loop_thread(self) -> None:
        prev = self._begin()
        while not self._stop.wait(self.interval):
            now = self.clock()
            self.note_wake(prev + self.interval, now)
            prev = now

    async def run(self, begun: float | None = None) -> None:
        """Sample this event loop until cancelled (``begun``: when :meth:`ensure_task` started it)."""
        prev = self._begin() if begun is None else begun
        try:
            while True:
                await asyncio.sleep(self.interval)
                now = self.clock()
                self.note_wake(prev + self.interval, now)
                prev = now
        finally:
            with self._lock:
                self._due, self._stopped_at = None, self.clock()

    # -- drivers -----------------------------------------------------------------------------
    def start_thread(self) -> "LagSampler":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop_thread, name="cbchaos-lag", daemon=True)
            self._thread.start()
        return self

    def ensure_task(self) -> None:
        """Start the asyncio sampler on the running loop (once)."""
        if self._task is None or self._task.done():
            # begun now, not when the task first runs: a loop starved before that is lag too
            self._task = asyncio.get_running_loop().create_task(self.run(self._begin()))

    async def stop_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2 * self.interval + 1.0)
            self._thread = None
        with self._lock:
            self._due, self._stopped_at = None, self.clock()

    # -- reading -----------------------------------------------------------------------------
    def window(self, t0: float, t1: float | None = None) -> LagWindow:
        """Lag inside ``[t0, t1]`` (``t1`` defaults to now; an overdue wake-up in progress counts)."""
        now = self.clock()
        t1 = now if t1 is None else t1
        with self._lock:
            spans = list(self._late)
            if self._due is not None and now > self._due:
                spans.append((self._due, now))  # the sampler is late right now
            started = self._started_at
        total = worst = 0.0
        n = 0
        for a, b in spans:
            part = min(b, t1) - max(a, t0)
            if part > 0:
                total += part
                worst = max(worst, part)
                n += 1
        stopped = self._stopped_at
        covered = started is not None and started <= t0 and (stopped is None or stopped >= t1)
        return LagWindow(t0, t1, total, worst, n, covered)


def combined(windows: list[LagWindow]) -> LagWindow | None:
    """Samplers of the same process see the same starvation: take the largest, never add them."""
    if not windows:
        return None
    return max(windows, key=lambda w: (w.sum_s, w.max_s))


def within(measured: float, lag: float | None, deadline: float) -> bool:
    """The lag-aware judgement: ``measured - lag <= deadline`` (no observed lag: ``lag`` 0)."""
    return measured - (lag or 0.0) <= deadline


def judged_text(measured: float, lag: float | None, deadline: float) -> str:
    lag = lag or 0.0
    rel = "<=" if within(measured, lag, deadline) else ">"
    return f"{measured:.3f} s measured - {lag:.3f} s observed lag = {measured - lag:.3f} s {rel} {deadline:g} s"
