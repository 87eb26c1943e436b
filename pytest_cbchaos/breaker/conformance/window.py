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


class InWindow:
    """``with InWindow(st, fn): op()`` runs ``fn`` on its own thread from inside ``op``'s read-write
    window (the store's ``pause_hook``) and joins it on exit; :attr:`landed` tells whether it completed
    inside. An op that never paused (an atomic store without a window) gets ``fn`` right after it on
    this thread, unless ``run_after`` is False. :attr:`result` is ``fn``'s return value."""

    def __init__(self, st: Any, fn: Callable[[], Any], *, run_after: bool = True) -> None:
        self.st, self.fn, self.run_after = st, fn, run_after
        self.landed, self.result = False, None
        self._inside: Interferer | None = None

    def _hook(self) -> None:
        self.st.pause_hook = None
        self._inside = Interferer(self.st, self.fn)

    def __enter__(self) -> "InWindow":
        if hasattr(self.st, "pause_hook"):
            self.st.pause_hook = self._hook
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if hasattr(self.st, "pause_hook"):
            self.st.pause_hook = None  # an op that never paused must not leave the hook to the next op
        if self._inside is not None:
            self.result, self.landed = self._inside.join(), self._inside.landed
        elif et is None and self.run_after:
            self.result = self.fn()


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


class Lockstep:
    """A deterministic schedule for concurrent programs on threads (``ConcurrentConfig.window``, and
    the store's ``pause_hook``): the workers' ``k``-th ops form phase ``k``; in a phase the ops start
    one at a time in worker order; an op that reaches its window (has read) hands the turn on and
    waits; when every op of the phase has finished or is waiting, the waiting ones write one at a
    time in worker order. So all windowed ops of a phase read before any writes (the race happens)
    and a replay of a program makes the same decisions. Each worker's store calls go through
    :class:`Scheduled`; outside a round everything passes straight through. It is for stores that
    do not hold a lock across their hook (the non-atomic mutants): a locked store would block the
    next op on its lock, and the schedule reports "stuck" after ``WAIT_LIMIT``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._local = threading.local()
        self._live: set[int] = set()
        self._arrived: list[int] = []     # ops of the current phase not finished yet
        self._next: list[int] = []        # workers already waiting for the next phase
        self._held: list[int] = []
        self._turn: int | None = None      # the worker whose op may run now
        self._releasing = False
        self.races = 0  # phases in which two or more ops were in their windows together

    # -- runner side --
    def start_round(self, workers: int) -> None:
        with self._cond:
            self._live = set(range(workers))
            self._arrived, self._next, self._held, self._turn, self._releasing = [], [], [], None, False

    def worker_done(self, worker: int) -> None:
        with self._cond:
            self._live.discard(worker)
            self._maybe_start()
            self._cond.notify_all()

    # -- store side --
    def begin(self, worker: int) -> None:
        self._local.worker = worker
        with self._cond:
            if worker not in self._live:
                return
            (self._next if self._turn is not None else self._arrived).append(worker)
            self._maybe_start()
            self._wait(lambda: self._turn == worker)

    def end(self, worker: int) -> None:
        with self._cond:
            if worker not in self._live or worker not in self._arrived:
                return
            self._arrived.remove(worker)
            if worker in self._held:
                self._held.remove(worker)
            self._advance()

    def __call__(self) -> None:  # the pause_hook: the op has read
        w = getattr(self._local, "worker", None)
        with self._cond:
            if w is None or w not in self._live or self._turn != w:
                return
            self._held.append(w)
            self._advance()
            self._wait(lambda: self._releasing and self._turn == w)

    # -- internals (under the condition) --
    def _maybe_start(self) -> None:
        if self._turn is None and self._arrived and set(self._arrived) >= self._live:
            self._arrived.sort()
            self._turn = self._arrived[0]
            self._cond.notify_all()

    def _advance(self) -> None:
        waiting = [w for w in self._arrived if w not in self._held]
        if not self._releasing and waiting:
            self._turn = min(waiting)
        elif self._held:
            if not self._releasing:
                self.races += len(self._held) > 1
            self._releasing = True
            self._turn = self._held[0]
        else:  # phase over: the next ops arrive
            self._turn, self._releasing, self._arrived, self._next = None, False, self._next, []
            self._maybe_start()
        self._cond.notify_all()

    def _wait(self, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_LIMIT
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"lockstep: stuck (turn {self._turn}, held {self._held}, live {self._live})")
            self._cond.wait(0.01)


class Scheduled:
    """One worker's view of a shared store: every call is one op of the :class:`Lockstep` schedule."""

    def __init__(self, store: Any, sched: Lockstep, worker: int) -> None:
        self._store, self._sched, self._worker = store, sched, worker

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr) or name.startswith("_") or name == "close":
            return attr

        def op(*a: Any, **k: Any) -> Any:
            self._sched.begin(self._worker)
            try:
                return attr(*a, **k)
            finally:
                self._sched.end(self._worker)
        return op


@contextlib.contextmanager
def tiny_switch_interval(seconds: float = 1e-6) -> Iterator[None]:
    """Let the interpreter switch threads every ``seconds`` (restored after)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(old)
