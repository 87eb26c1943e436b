"""What a workload saw (:class:`Observations`) and what one check concluded (:class:`CheckResult`):
the data passed between a target, the checks and the runner."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Observations:
    """What a workload saw. Times are ms since the workload started (the report's time axis)."""

    history: list[dict[str, Any]] = field(default_factory=list)       # Jepsen-shaped op events
    latencies: list[dict[str, Any]] = field(default_factory=list)     # {t_ms, worker, ms, ok}
    transitions: list[dict[str, Any]] = field(default_factory=list)   # {t_ms, worker, from, to}
    recoveries: dict[str, float | None] = field(default_factory=dict)  # name -> seconds (None: never)
    metrics: dict[str, Any] = field(default_factory=dict)
    probes: list[dict[str, Any]] = field(default_factory=list)        # {id, value, unit, note}
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str, item: Any) -> None:
        with self._lock:
            getattr(self, kind).append(item)

    def ops_observed(self) -> int:
        """Operations the workload completed or attempted: ``metrics["ops_observed"]`` when a target
        counts them itself, else the larger of latency samples and history invocations."""
        if self.metrics.get("ops_observed") is not None:
            return int(self.metrics["ops_observed"])
        invokes = sum(1 for e in self.history if e.get("type") == "invoke")
        return max(len(self.latencies), invokes)


@dataclass
class CheckResult:
    verdict: str  # "ok" | "violated" | "unknown" | "skipped"
    detail: str = ""
    counterexample: Any = None
    measured: dict[str, Any] = field(default_factory=dict)
    enforced: bool = True  # False: measure-and-report (M) — reported, never fails the run

    @property
    def failed(self) -> bool:
        return self.enforced and self.verdict in ("violated", "unknown")
