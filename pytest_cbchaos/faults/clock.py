"""Injectable clocks: the only time source of kit-aware code, so clock skew can be injected.

``Clock`` gives wall time (``time()``), monotonic time (``monotonic()``) and sleeps. A
``SkewedClock`` adds an offset (and optional drift) to wall time only; monotonic time is
never skewed because it is never persisted or compared across processes.
"""

from __future__ import annotations

import asyncio
import threading
import time as _time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float: ...
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time."""

    def time(self) -> float:
        return _time.time()

    def monotonic(self) -> float:
        return _time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            _time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class SkewedClock(SystemClock):
    """Wall time shifted by ``offset_s`` plus ``drift_ppm`` parts per million since the skew was set."""

    def __init__(self, offset_s: float = 0.0, drift_ppm: float = 0.0) -> None:
        self._lock = threading.Lock()
        self.set_skew(offset_s, drift_ppm)

    def set_skew(self, offset_s: float, drift_ppm: float = 0.0) -> None:
        with self._lock:
            self._offset = float(offset_s)
            self._drift = float(drift_ppm) / 1e6
            self._anchor = _time.monotonic()

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset + (_time.monotonic() - self._anchor) * self._drift

    def time(self) -> float:
        return _time.time() + self.offset


class ManualClock:
    """A clock that only moves when told to: for unit tests of time-dependent logic."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            self._mono += seconds

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()
