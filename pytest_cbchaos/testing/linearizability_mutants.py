"""Deliberately non-linearizable breaker stores for the concurrent checker's own tests.

The breaker area's ``breaker_mutants`` provides ``BlindClaimStore`` (probe claim without
atomicity) and ``StateOnlyCasStore`` (CAS comparing only ``state``); this module adds the
non-atomic read-modify-write failure count and helpers to widen race windows.
"""

from __future__ import annotations

import time
from typing import Any

from pytest_cbchaos.breaker import kernel
from pytest_cbchaos.breaker.store import InMemoryStore, check_recovery, check_threshold, reply


class NonAtomicFailureCountStore(InMemoryStore):
    """``atomic_record_failure`` reads the record, pauses, then writes: concurrent failures are
    lost (the count stays low and the breaker does not trip when it must)."""

    def __init__(self, *, gap_s: float = 0.002, **kw: Any) -> None:
        super().__init__(**kw)
        self.gap_s = gap_s

    def atomic_record_failure(self, backend: str, failure_threshold: int, recovery_timeout: float,
                              *, op_id: str | None = None, now: float | None = None) -> dict[str, Any]:
        failure_threshold, recovery_timeout = check_threshold(failure_threshold), check_recovery(recovery_timeout)
        oid = op_id or self.op_ids()
        t = self._now(now)
        with self._lock:
            rec, _ = self._read(backend, t)
        time.sleep(self.gap_s)
        o = kernel.record_failure(rec, t, oid, failure_threshold, recovery_timeout)
        if o.applied:
            with self._lock:
                self._write(backend, o.record, t)
        return reply(o, t)


def widen(store: Any, gap_s: float = 0.002) -> Any:
    """Give a ``breaker_mutants`` store a pause between its read and its write."""
    store.pause_hook = lambda: time.sleep(gap_s)
    return store
