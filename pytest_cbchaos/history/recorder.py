"""Thread-, task- and process-safe operation recorder (docs/linearizability-design.md#recorder).

Timestamps come from ``time.monotonic_ns()`` (system-wide on Linux, so threads and worker
processes share it) and are stored relative to the recorder's start. Appends happen under one
lock; timestamps are taken by the caller's handle right before the request and right after the
reply, outside the lock.

Worker processes get a :class:`RemoteWorker` (picklable; holds the write end of a pipe). The
parent drains each pipe on a thread and appends the events under its own lock, mapping the
worker to its current process id. A worker SIGKILLed mid-operation leaves a pending invoke that
:meth:`Recorder.crash_worker` (or :meth:`Recorder.close`) completes as ``info``.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from .classify import Classifier, default_classifier
from .ops import NEMESIS

if TYPE_CHECKING:  # pragma: no cover
    from ..faults.journal import FaultJournal
    from .store import History


class RecorderClosed(RuntimeError):
    """An event was recorded after :meth:`Recorder.close`."""


# Internal event: (index, type, process, f, value, time_ns, error, key, extras-or-None)
_Event = tuple


class OpHandle:
    """One in-flight operation; complete it exactly once with :meth:`ok`, :meth:`fail` or :meth:`info`."""

    __slots__ = ("_rec", "worker", "f", "key", "done")

    def __init__(self, rec: "Recorder | RemoteWorker", worker: int, f: str, key: Any) -> None:
        self._rec = rec
        self.worker = worker
        self.f = f
        self.key = key
        self.done = False

    def _complete(self, typ: str, value: Any, error: Any) -> None:
        t = time.monotonic_ns()
        if self.done:
            raise RuntimeError(f"operation {self.f!r} of worker {self.worker} completed twice")
        self.done = True
        self._rec._complete(self.worker, typ, self.f, value, t, error, self.key)

    def ok(self, value: Any = None) -> None:
        """The op took effect; ``value`` is its output (refusals that carry information are ok)."""
        self._complete("ok", value, None)

    def fail(self, error: Any = None) -> None:
        """The op definitely had no effect (e.g. connection refused before any byte was written)."""
        self._complete("fail", None, error)

    def info(self, error: Any = None) -> None:
        """Indeterminate: the op may or may not have taken effect."""
        self._complete("info", None, error)

    def exception(self, exc: BaseException, classifier: Classifier | None = None) -> None:
        """Complete from an exception using the classifier (docs/linearizability-design.md#completion default table)."""
        typ, value, err = (classifier or default_classifier)(exc)
        self._complete(typ, value, err)


class _OpContext:
    def __init__(self, handle: OpHandle, classifier: Classifier | None) -> None:
        self.handle = handle
        self.classifier = classifier

    def __enter__(self) -> OpHandle:
        return self.handle

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and not self.handle.done:
            if isinstance(exc, Exception):
                self.handle.exception(exc, self.classifier)
            else:
                self.handle.info(["interrupted", type(exc).__name__])
        elif not self.handle.done:
            self.handle.info(["not-completed"])
        return False


class _OpAPI:
    def invoke(self, worker: int, f: str, value: Any = None, *, key: Any = None,
               **extras: Any) -> OpHandle:
        """Record an invoke (timestamp taken now: call it right before writing the request)."""
        t = time.monotonic_ns()
        self._invoke(worker, f, value, t, key, extras or None)  # type: ignore[attr-defined]
        return OpHandle(self, worker, f, key)  # type: ignore[arg-type]

    def op(self, worker: int, f: str, value: Any = None, *, key: Any = None,
           classifier: Classifier | None = None, **extras: Any) -> _OpContext:
        """``with rec.op(w, "read", key="k") as h: h.ok(r.get("k"))``; exceptions are classified."""
        return _OpContext(self.invoke(worker, f, value, key=key, **extras), classifier)


class Recorder(_OpAPI):
    """Records one history. ``n_workers`` logical workers; process ids are re-numbered on crash."""

    def __init__(self, n_workers: int, *, journal: "FaultJournal | None" = None,
                 t0_ns: int | None = None) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.n_workers = n_workers
        self.journal = journal
        self.t0_ns = time.monotonic_ns() if t0_ns is None else t0_ns
        self._lock = threading.Lock()
        self._events: list[_Event] = []
        self._proc = list(range(n_workers))
        self._pending: dict[int, int] = {}  # worker -> index of its pending invoke event
        self._closed = False
        self._drains: list[threading.Thread] = []
        self._drain_of: dict[int, threading.Thread] = {}

    # -- appends -------------------------------------------------------------------------
    def _check_worker(self, worker: int) -> None:
        if not (isinstance(worker, int) and 0 <= worker < self.n_workers):
            raise ValueError(f"worker must be in 0..{self.n_workers - 1}, got {worker!r}")

    def _invoke(self, worker: int, f: str, value: Any, t_ns: int, key: Any,
                extras: dict[str, Any] | None) -> None:
        self._check_worker(worker)
        if self.journal is not None:
            faults = self.journal.active_ids(t_ns)
            if faults:
                extras = dict(extras or {})
                extras["faults"] = faults
        with self._lock:
            if self._closed:
                raise RecorderClosed("recorder is closed")
            if worker in self._pending:
                raise RuntimeError(f"worker {worker} invoked {f!r} while an op is still pending")
            idx = len(self._events)
            self._events.append((idx, "invoke", self._proc[worker], f, value, t_ns - self.t0_ns,
                                 None, key, extras))
            self._pending[worker] = idx

    def _complete(self, worker: int, typ: str, f: str, value: Any, t_ns: int, error: Any,
                  key: Any) -> None:
        with self._lock:
            if self._closed:
                raise RecorderClosed("recorder is closed")
            if self._pending.pop(worker, None) is None:
                raise RuntimeError(f"worker {worker} completed {f!r} with no pending invoke")
            idx = len(self._events)
            self._events.append((idx, typ, self._proc[worker], f, value, t_ns - self.t0_ns,
                                 error, key, None))
            if typ == "info":
                self._proc[worker] += self.n_workers

    def crash_worker(self, worker: int, error: Any = ("crashed",)) -> bool:
        """Complete ``worker``'s pending op as ``info`` (e.g. its process was SIGKILLed)."""
        t = time.monotonic_ns()
        with self._lock:
            idx0 = self._pending.pop(worker, None)
            if idx0 is None:
                return False
            ev = self._events[idx0]
            idx = len(self._events)
            self._events.append((idx, "info", ev[2], ev[3], None, t - self.t0_ns,
                                 list(error), ev[7], None))
            self._proc[worker] += self.n_workers
            return True

    def nemesis(self, kind: str, target: str, params: dict[str, Any] | None = None,
                phase: str = "start") -> None:
        """Record a nemesis ``info`` event (fault start/stop) for the report; never checked."""
        t = time.monotonic_ns()
        with self._lock:
            if self._closed:
                raise RecorderClosed("recorder is closed")
            idx = len(self._events)
            self._events.append((idx, "info", NEMESIS, kind, {"target": target, "phase": phase,
                                 **(params or {})}, t - self.t0_ns, None, None, None))

    def process_id(self, worker: int) -> int:
        with self._lock:
            return self._proc[worker]

    def pending_workers(self) -> list[int]:
        with self._lock:
            return sorted(self._pending)

    # -- process workers -----------------------------------------------------------------
    def remote(self, worker: int, *, ctx: Any = None) -> "RemoteWorker":
        """A picklable handle for one worker process. Pass it to the child as an argument."""
        self._check_worker(worker)
        ctx = ctx or multiprocessing.get_context("spawn")
        reader, writer = ctx.Pipe(duplex=False)
        t = threading.Thread(target=self._drain, args=(reader,), daemon=True,
                             name=f"cbchaos-recorder-drain-{worker}")
        t.start()
        self._drains.append(t)
        rw = RemoteWorker(worker, writer)
        self._drain_of[id(writer)] = t
        return rw

    def join_remote(self, remote: "RemoteWorker", timeout: float = 10.0) -> bool:
        """Wait until one remote's pipe hit EOF (its process exited); True if drained."""
        t = self._drain_of.get(id(remote.conn))
        if t is None:
            return True
        t.join(timeout)
        return not t.is_alive()

    def _drain(self, conn: multiprocessing.connection.Connection) -> None:
        try:
            while True:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    return
                kind = msg[0]
                if kind == "i":
                    _, w, f, value, t, key, extras = msg
                    self._invoke(w, f, value, t, key, extras)
                elif kind == "c":
                    _, w, typ, f, value, t, error, key = msg
                    self._complete(w, typ, f, value, t, error, key)
        except RecorderClosed:
            return
        finally:
            conn.close()

    def join_remotes(self, timeout: float = 10.0) -> bool:
        """Wait until every remote pipe hit EOF (all children exited or closed their handle)."""
        deadline = time.monotonic() + timeout
        for t in self._drains:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._drains)

    # -- output --------------------------------------------------------------------------
    def close(self, *, crash_pending: bool = True) -> None:
        """Refuse further events; pending ops become ``info`` unless ``crash_pending=False``."""
        if crash_pending:
            for w in self.pending_workers():
                self.crash_worker(w, ("pending-at-close",))
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._events)

    def events(self) -> list[dict[str, Any]]:
        """The recorded events as dicts (nemesis events from the journal not included)."""
        with self._lock:
            evs = list(self._events)
        return [_to_dict(e) for e in evs]

    def history(self, *, include_journal: bool = True) -> "History":
        """A :class:`History` with events and, if a journal is attached, its fault windows."""
        from .store import History
        faults = []
        if self.journal is not None and include_journal:
            faults = [dict(w, start_ns=w["start_ns"] - self.t0_ns,
                           end_ns=None if w["end_ns"] is None else w["end_ns"] - self.t0_ns)
                      for w in self.journal.to_dicts()]
        return History(self.events(), faults=faults)


def _to_dict(e: _Event) -> dict[str, Any]:
    d: dict[str, Any] = {"index": e[0], "type": e[1], "process": e[2], "f": e[3], "value": e[4],
                         "time": e[5]}
    if e[6] is not None:
        d["error"] = e[6]
    if e[7] is not None:
        d["key"] = e[7]
    if e[8]:
        d.update(e[8])
    return d


@dataclass
class RemoteWorker(_OpAPI):
    """Child-process side of the recorder: sends events to the parent over a pipe."""

    worker: int
    conn: Any
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"worker": self.worker, "conn": self.conn}

    def __setstate__(self, st: dict[str, Any]) -> None:
        self.worker = st["worker"]
        self.conn = st["conn"]
        self._lock = threading.Lock()

    def _invoke(self, worker: int, f: str, value: Any, t_ns: int, key: Any,
                extras: dict[str, Any] | None) -> None:
        with self._lock:
            self.conn.send(("i", worker, f, value, t_ns, key, extras))

    def _complete(self, worker: int, typ: str, f: str, value: Any, t_ns: int, error: Any,
                  key: Any) -> None:
        with self._lock:
            self.conn.send(("c", worker, typ, f, value, t_ns, error, key))

    def invoke(self, worker: int | None = None, f: str = "", value: Any = None, *,  # type: ignore[override]
               key: Any = None, **extras: Any) -> OpHandle:
        """Like :meth:`Recorder.invoke`; ``worker`` defaults to this handle's worker."""
        return super().invoke(self.worker if worker is None else worker, f, value, key=key, **extras)

    def close(self) -> None:
        self.conn.close()


def iter_events(rec: Recorder) -> Iterator[dict[str, Any]]:
    yield from rec.events()



