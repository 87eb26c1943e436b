"""Run status codes, liveness states and result records of the recovery runner (docs/recovery-design.md#run-status)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class RunStatus(enum.IntEnum):
    """One condition maps to one value on every path; usable as a process exit code."""

    OK = 0
    ERROR = 1
    INCOMPLETE = 2
    SERVER_UNREACHABLE = 3
    SESSION_STALLED = 4
    INTERRUPTED = 130


class Liveness(enum.Enum):
    ALIVE = "alive"
    STOPPED = "stopped"
    DEAD = "dead"
    UNKNOWN = "unknown"


TERMINAL_OK_REASONS = frozenset({"stop", "end_turn"})
MID_TURN_REASONS = frozenset({"tool-calls", "tool_use", "unknown", "other"})
INCOMPLETE_REASONS = frozenset({"length", "max_tokens"})
ERROR_REASONS = frozenset({"content-filter", "content_filter", "error"})
RECOVERABLE = frozenset({RunStatus.SERVER_UNREACHABLE, RunStatus.SESSION_STALLED})

# Every (status, reason) an attempt can decide: the table of docs/recovery.md#verdicts, walked by
# tests/recovery/test_verdict_cells.py (each cell reached by a scripted scenario on every run).
VERDICT_CELLS: tuple[tuple[RunStatus, str], ...] = (
    (RunStatus.OK, "stop"), (RunStatus.OK, "end_turn"),
    (RunStatus.ERROR, "provider_error"), (RunStatus.ERROR, "content-filter"), (RunStatus.ERROR, "error"),
    (RunStatus.ERROR, "request_error"), (RunStatus.ERROR, "restart_failed"), (RunStatus.ERROR, "cancelled"),
    (RunStatus.ERROR, "consumer_leak"),
    (RunStatus.INCOMPLETE, "length"), (RunStatus.INCOMPLETE, "max_tokens"), (RunStatus.INCOMPLETE, "tool-calls"),
    (RunStatus.INCOMPLETE, "turn_not_started"), (RunStatus.INCOMPLETE, "turn_timeout"),
    (RunStatus.SERVER_UNREACHABLE, "server_unreachable"),
    (RunStatus.SESSION_STALLED, "first_event_timeout"), (RunStatus.SESSION_STALLED, "session_stalled"),
    (RunStatus.INTERRUPTED, "interrupted"),
)


def status_for_reason(reason: str | None) -> RunStatus:
    """Map a final ``step-finish`` reason (seen together with idle) to a status."""
    if reason in TERMINAL_OK_REASONS:
        return RunStatus.OK
    if reason in INCOMPLETE_REASONS:
        return RunStatus.INCOMPLETE
    if reason in ERROR_REASONS:
        return RunStatus.ERROR
    # idle after a mid-turn reason or with none at all: the turn did not end validly
    return RunStatus.INCOMPLETE


@dataclass
class Verdict:
    """The one classification that ends an attempt."""

    status: RunStatus
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0  # monotonic time the verdict was reached
    idle_confirmed: str | None = None  # sse | status | completion


@dataclass
class AttemptRecord:
    n: int
    generation: int | None
    session_id: str | None = None
    verdict: RunStatus | None = None
    reason: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    ended_at: float = 0.0
    sse_connections: int = 0
    fault_to_verdict_s: float | None = None
    lag_s: float | None = None  # loop lag observed in the window the verdict's latency is measured over
    prompt: str = ""
    aborted: bool = False


@dataclass
class TurnResult:
    status: RunStatus
    finish_reason: str | None
    session_id: str | None = None
    text: str = ""
    tokens: dict[str, Any] | None = None
    idle_confirmed: str | None = None
    recoveries_used: int = 0
    budget_exhausted: bool = False
    error: str | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.OK
