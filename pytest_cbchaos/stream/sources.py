"""Turn sources: the `TurnSource` protocol and `ScriptedSource` (a list with injectable failures)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping, Protocol, Sequence, runtime_checkable

STAGES = ("model_config", "session", "transport")


@dataclass
class SourceEvent:
    """One source event: a kind of docs/stream-design.md#kinds and its payload (the relay serialises it at emission)."""

    kind: str
    payload: dict[str, Any] = field(default_factory=dict)


class SourceFailure(Exception):
    """A mid-turn source failure with an error code for the terminal (R1)."""

    def __init__(self, message: str, code: str = "source.error", retriable: bool = False) -> None:
        super().__init__(message)
        self.code, self.retriable = code, retriable


@runtime_checkable
class TurnSource(Protocol):
    async def bootstrap(self, stage: str) -> None: ...
    def __aiter__(self) -> AsyncIterator[SourceEvent]: ...
    def abort(self) -> None: ...
    async def aclose(self) -> None: ...


class ScriptedSource:
    """Replays ``events``; ``fail_stage`` maps a bootstrap stage to an exception (or a delay in
    seconds to simulate a hang), ``fail_at`` maps an event index to an exception raised instead of
    it, ``delay_s`` sleeps before each event, ``stall_at`` index blocks until aborted.
    """

    def __init__(self, events: Sequence[SourceEvent | tuple[str, Mapping[str, Any]]], *,
                 fail_stage: Mapping[str, BaseException | float] | None = None,
                 fail_at: Mapping[int, BaseException] | None = None, delay_s: float = 0.0,
                 stall_at: int | None = None) -> None:
        self.events = [e if isinstance(e, SourceEvent) else SourceEvent(e[0], dict(e[1])) for e in events]
        self.fail_stage = dict(fail_stage or {})
        self.fail_at = dict(fail_at or {})
        self.delay_s = delay_s
        self.stall_at = stall_at
        self.aborted = asyncio.Event()
        self.closed = False
        self.stages_seen: list[str] = []

    async def bootstrap(self, stage: str) -> None:
        self.stages_seen.append(stage)
        f = self.fail_stage.get(stage)
        if isinstance(f, BaseException):
            raise f
        if isinstance(f, (int, float)):
            await asyncio.sleep(f)

    async def __aiter__(self) -> AsyncIterator[SourceEvent]:
        for i, ev in enumerate(self.events):
            if self.aborted.is_set():
                return
            if i == self.stall_at:
                await self.aborted.wait()
                return
            await self._hold(i)
            if self.aborted.is_set():
                return
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if i in self.fail_at:
                raise self.fail_at[i]
            yield ev

    async def _hold(self, index: int) -> None:
        """Called before event ``index``; subclasses may wait here (an abort ends the turn after it)."""

    def abort(self) -> None:
        self.aborted.set()

    async def aclose(self) -> None:
        self.closed = True


def text_turn(n_deltas: int, *, terminal: str = "complete", part_id: str = "p1", word: str = "w") -> list[SourceEvent]:
    """A typical scripted turn: ``n_deltas`` text deltas, a usage event, then a terminal."""
    evs = [SourceEvent("text_delta", {"part_id": part_id, "text": f"{word}{i} "}) for i in range(n_deltas)]
    evs.append(SourceEvent("usage", {"input_tokens": 3, "output_tokens": n_deltas, "cost": 0}))
    if terminal == "complete":
        evs.append(SourceEvent("complete", {"finish_reason": "stop", "usage": {"output_tokens": n_deltas}}))
    elif terminal == "error":
        evs.append(SourceEvent("error", {"code": "source.provider_error", "stage": "stream",
                                         "message": "provider said no", "retriable": False, "partial": n_deltas > 0}))
    return evs
