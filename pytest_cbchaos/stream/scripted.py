"""Scripted turns that can cross a process boundary.

:class:`TurnScript` is the serialisable description of a scripted turn (its events, failures per
stage and per event, an optional gate mid-stream); :meth:`TurnScript.source` builds the
:class:`GatedScript` source a relay runs. The child-process relay of the stream harness receives
scripts as JSON, so tests and the state machine describe turns the same way in and out of process.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Mapping

from .sources import STAGES, ScriptedSource, SourceEvent, SourceFailure, text_turn

OUTCOMES = ("complete", "error_event", "source_failure", "bootstrap_failure")


class GatedScript(ScriptedSource):
    """A scripted source that can wait on ``gate`` before event ``hold_at`` (abortable by a cancel)."""

    def __init__(self, events: list[SourceEvent], *, hold_at: int | None = None, **kw: Any) -> None:
        super().__init__(events, **kw)
        self.hold_at = hold_at
        self.gate = asyncio.Event()
        if hold_at is None:
            self.gate.set()

    async def _hold(self, index: int) -> None:
        if index != self.hold_at or self.gate.is_set():
            return
        gate, abort = asyncio.ensure_future(self.gate.wait()), asyncio.ensure_future(self.aborted.wait())
        try:
            await asyncio.wait({gate, abort}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gate.cancel()
            abort.cancel()
            await asyncio.gather(gate, abort, return_exceptions=True)


class ScriptError(ValueError):
    """A turn script that cannot be built; names the key, the value and what was expected."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        super().__init__(f"turn script: {key}={value!r}: expected {expected}")
        self.key, self.value, self.expected = key, value, expected


@dataclass(frozen=True)
class TurnScript:
    """``outcome`` of :data:`OUTCOMES` over ``deltas`` text deltas; ``at`` is the event index of a
    mid-stream failure (``source_failure``); ``stage`` the failing bootstrap stage
    (``bootstrap_failure``); ``hold_at`` gates the source before that event; ``delay_s`` paces it;
    ``control`` starts the stream with a ``recovery`` control event (the relay sends it alone).
    ``at`` and ``hold_at`` count the turn's own events, whether or not that control event leads."""

    outcome: str = "complete"
    deltas: int = 3
    at: int = 0
    stage: str = "session"
    hold_at: int | None = None
    delay_s: float = 0.0
    control: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ScriptError("outcome", self.outcome, f"one of {', '.join(OUTCOMES)}")
        if not isinstance(self.deltas, int) or not 0 <= self.deltas <= 10_000:
            raise ScriptError("deltas", self.deltas, "an integer in [0, 10000]")
        if not isinstance(self.at, int) or self.at < 0:
            raise ScriptError("at", self.at, "an integer >= 0")
        if self.stage not in STAGES:
            raise ScriptError("stage", self.stage, f"one of {', '.join(STAGES)}")
        if self.hold_at is not None and (not isinstance(self.hold_at, int) or self.hold_at < 0):
            raise ScriptError("hold_at", self.hold_at, "null or an integer >= 0")
        if not isinstance(self.delay_s, (int, float)) or not 0 <= self.delay_s <= 10:
            raise ScriptError("delay_s", self.delay_s, "seconds in [0, 10]")
        if not isinstance(self.control, bool):
            raise ScriptError("control", self.control, "true or false")

    @property
    def expected_status(self) -> str:
        return "completed" if self.outcome == "complete" else "failed"

    @property
    def expected_error_code(self) -> str | None:
        return {"error_event": "source.provider_error", "source_failure": "source.scripted",
                "bootstrap_failure": f"bootstrap.{self.stage}"}.get(self.outcome)

    def source(self) -> GatedScript:
        at = min(self.at, self.deltas)
        kw: dict[str, Any] = {"delay_s": float(self.delay_s)}
        if self.outcome == "error_event":
            events = text_turn(self.deltas, terminal="error")
        else:
            events = text_turn(self.deltas)
        lead = 1 if self.control else 0
        if self.control:
            events.insert(0, SourceEvent("recovery", {"attempt": 1, "cause": "scripted"}))
        if self.outcome == "source_failure":
            kw["fail_at"] = {at + lead: SourceFailure("scripted mid-stream failure", code="source.scripted")}
        if self.outcome == "bootstrap_failure":
            kw["fail_stage"] = {self.stage: RuntimeError(f"scripted {self.stage} failure")}
        hold = self.hold_at + lead if self.outcome != "bootstrap_failure" and self.hold_at is not None else None
        return GatedScript(events, hold_at=hold, **kw)

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "deltas": self.deltas, "at": self.at, "stage": self.stage,
                "hold_at": self.hold_at, "delay_s": self.delay_s, "control": self.control}

    @classmethod
    def from_json(cls, data: Any) -> "TurnScript":
        if not isinstance(data, Mapping):
            raise ScriptError("script", data, "a JSON object")
        unknown = set(data) - {"outcome", "deltas", "at", "stage", "hold_at", "delay_s", "control"}
        if unknown:
            raise ScriptError(sorted(unknown)[0], data[sorted(unknown)[0]],
                              "one of the keys outcome, deltas, at, stage, hold_at, delay_s, control")
        return cls(**dict(data))
