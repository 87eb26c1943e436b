"""Forcing interleavings through a store's ``pause_hook`` (docs/breaker-design.md#forced-interleavings).

A store calls ``pause_hook()`` between its read and its write. Where it holds its lock across the
hook (``InMemoryStore``), it also reports ``lock_waiters()``: threads blocked on that lock while the
hook runs. That turns "did the other op land inside the window?" into a decision, not a timeout:
an interfering op either completes (the store is not atomic) or blocks on the lock (it will run
after). :func:`tiny_switch_interval` makes the GIL switch threads often, so unforced races show up.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any, Callable, Iterator

WAIT_LIMIT = 10.0  # a kit error, not a verdict: the store neither completed nor blocked the op


def _waiters(st: Any) -> int:
    fn = getattr(st, "lock_waiters", None)
    return int(fn()) if callable(fn) else 0


class Interferer:
    """``fn`` on its own thread, started from inside a window; :attr:`landed` tells where it ran."""

    def __init__(self, st: Any, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + WAIT_LIMIT
        while not self._done.wait(0.0005):
            if _waiters(st) > 0:
                self.landed = False  # blocked on the store's lock: it runs after the windowed op
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"interfering op neither completed nor blocked within {WAIT_LIMIT}s")
        self.landed = True

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # re-raised by join
            self.error = exc
        finally:
            self._done.set()

    def join(self) -> Any:
        self._thread.join(WAIT_LIMIT)
        if self.error is not None:
            raise self.error
        return self.result


class Rendezvous:
    """A hook that holds the first ``n`` windows open until all ``n`` callers have read: each waits
    until ``arrived + left + lock_waiters() >= n`` (a caller blocked on the lock cannot arrive first;
    one that failed before its window calls :meth:`leave`)."""

    def __init__(self, st: Any, n: int) -> None:
        self.st, self.n = st, n
        self._cond = threading.Condition()
        self._arrived = self._left = 0

    def leave(self) -> None:
        with self._cond:
            self._left += 1
            self._cond.notify_all()

    def __call__(self) -> None:
        deadline = time.monotonic() + WAIT_LIMIT
        with self._cond:
            self._arrived += 1
            self._cond.notify_all()
            if self._arrived > self.n:
                return
            while self._arrived + self._left + _waiters(self.st) < self.n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rendezvous: {self._arrived} of {self.n} arrived within {WAIT_LIMIT}s")
                self._cond.wait(0.0005)


@contextlib.contextmanager
def tiny_switch_interval(seconds: float = 1e-6) -> Iterator[None]:
    """Let the interpreter switch threads every ``seconds`` (restored after)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(old)
