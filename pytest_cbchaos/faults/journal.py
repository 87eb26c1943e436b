"""The fault journal: every fault start/stop with monotonic timestamps, for histories and reports.

Entries have the shape of ``results.json``'s ``faults`` list:
``{id, kind, target, params, start_ns, end_ns}`` (``end_ns`` is None while the fault is active).
Timestamps come from ``time.monotonic_ns()`` taken before and after the control call.

A fault whose control call raised is *not* a window: :meth:`FaultJournal.fail` moves it to the
failures, so histories, timelines and counts only ever show faults that were applied
(docs/report-schema.md, "Verdict and audit").
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator


@dataclass
class FaultWindow:
    id: int
    kind: str
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int | None = None
    start_done_ns: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        return self.end_ns is None


@dataclass
class FaultFailure:
    """A requested fault that was never applied (its control call raised, or it was rejected)."""

    id: int
    kind: str
    target: str
    params: dict[str, Any]
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultJournal:
    """Thread-safe list of fault windows; optionally mirrored to a JSON-lines file."""

    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self.lane: Any = None  # the report's topology lane, set by a topology nemesis (faults/watch.py)
        self._ids = itertools.count(1)
        self._windows: list[FaultWindow] = []
        self._failures: list[FaultFailure] = []
        self.path = path

    def begin(self, kind: str, target: str, params: dict[str, Any] | None = None,
              start_ns: int | None = None) -> FaultWindow:
        """Open a window. Call right before the control call that starts the fault."""
        now = time.monotonic_ns()
        window = FaultWindow(next(self._ids), kind, target, dict(params or {}),
                             start_ns if start_ns is not None else now)
        with self._lock:
            self._windows.append(window)
        return window

    def started(self, window: FaultWindow) -> None:
        """Stamp the end of the control call that started the fault."""
        window.start_done_ns = time.monotonic_ns()

    def end(self, window: FaultWindow) -> None:
        """Close a window (idempotent). Call right after the control call that heals it."""
        with self._lock:
            if window.end_ns is None:
                window.end_ns = time.monotonic_ns()
        self._append_file(window)

    def fail(self, window: FaultWindow, error: BaseException | str) -> FaultFailure:
        """The control call that was to start ``window`` raised: drop the window, record a failure."""
        with self._lock:
            if window in self._windows:
                self._windows.remove(window)
            failure = FaultFailure(window.id, window.kind, window.target, dict(window.params), _describe(error))
            self._failures.append(failure)
        return failure

    def reject(self, kind: str, target: str, params: dict[str, Any] | None, error: BaseException | str) -> FaultFailure:
        """A requested fault that failed before any control call (bad target, bad parameter)."""
        failure = FaultFailure(next(self._ids), kind, target, dict(params or {}), _describe(error))
        with self._lock:
            self._failures.append(failure)
        return failure

    def failures(self) -> list[FaultFailure]:
        with self._lock:
            return list(self._failures)

    def counts(self) -> dict[str, int]:
        """``{requested, applied, failed}``: every request either became a window or a failure."""
        with self._lock:
            applied, failed = len(self._windows), len(self._failures)
        return {"requested": applied + failed, "applied": applied, "failed": failed}

    def instant(self, kind: str, target: str, params: dict[str, Any] | None = None) -> FaultWindow:
        """A fault with no duration (e.g. SIGKILL): start and end stamped around the call site."""
        window = self.begin(kind, target, params)
        self.started(window)
        self.end(window)
        return window

    @contextmanager
    def window(self, kind: str, target: str, params: dict[str, Any] | None = None) -> Iterator[FaultWindow]:
        win = self.begin(kind, target, params)
        try:
            yield win
        except BaseException as exc:
            self.fail(win, exc)
            raise
        self.end(win)

    def active_ids(self, at_ns: int | None = None) -> list[int]:
        """Ids of faults active at ``at_ns`` (default: now)."""
        at = time.monotonic_ns() if at_ns is None else at_ns
        with self._lock:
            return [w.id for w in self._windows
                    if w.start_ns <= at and (w.end_ns is None or at <= w.end_ns)]

    def windows(self) -> list[FaultWindow]:
        with self._lock:
            return list(self._windows)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [w.to_dict() for w in self.windows()]

    def close_all(self) -> None:
        for w in self.windows():
            self.end(w)

    def _append_file(self, window: FaultWindow) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(window.to_dict(), sort_keys=True) + "\n")


def _describe(error: BaseException | str) -> str:
    return error if isinstance(error, str) else f"{type(error).__name__}: {error}"
