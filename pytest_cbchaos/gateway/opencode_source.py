"""`OpencodeSource`: a `TurnSource` that runs a turn on real opencode through the recovery runner.

Text is taken from the runner's own turn tracker (session-filtered, deltas and cumulative parts
reconciled), so only this turn's session reaches the stream; a runner retry becomes a ``recovery``
entry; the runner's verdict becomes the terminal.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from pytest_cbchaos.recovery.attempt import Attempt
from pytest_cbchaos.recovery.status import RunStatus
from pytest_cbchaos.recovery.supervisor import AsyncRecoveryRunner
from pytest_cbchaos.stream.sources import SourceEvent, SourceFailure

_ERROR_CODES = {
    RunStatus.SERVER_UNREACHABLE: ("source.unreachable", True),
    RunStatus.SESSION_STALLED: ("source.stalled", True),
}


class _RelayAttempt(Attempt):
    def _on_event(self, event: dict[str, Any]) -> None:
        super()._on_event(event)
        sink = getattr(self.runner, "_cbchaos_sink", None)
        if sink is not None and self.tracker is not None:
            sink(self)


class _Runner(AsyncRecoveryRunner):
    attempt_class = _RelayAttempt


class OpencodeSource:
    def __init__(self, server: Any, prompt: str, *, model: tuple[str, str] | None = None, config: Any = None) -> None:
        self.runner = _Runner(server, config, model=model)
        self.runner._cbchaos_sink = self._sink
        self.prompt = prompt
        self.model = model
        self.session_id: str | None = None
        self._queue: asyncio.Queue = asyncio.Queue()
        self._emitted: dict[tuple[int, str], int] = {}
        self._attempt_n = 1
        self._task: asyncio.Task | None = None

    def _sink(self, attempt: Attempt) -> None:
        if attempt.n != self._attempt_n:
            self._attempt_n = attempt.n
            verdicts = [h for h in self.runner.history if h.get("type") == "verdict"]
            last = verdicts[-1].get("status") if verdicts else None
            cause = "server_unreachable" if last == "SERVER_UNREACHABLE" else "session_stalled"
            self._queue.put_nowait(SourceEvent("recovery", {"attempt": attempt.n, "cause": cause}))
        for pid, text in list(attempt.tracker.text_parts.items()):
            key = (attempt.n, pid)
            done = self._emitted.get(key, 0)
            if len(text) > done:
                self._emitted[key] = len(text)
                self._queue.put_nowait(SourceEvent("text_delta", {"part_id": pid, "text": text[done:]}))

    async def bootstrap(self, stage: str) -> None:
        if stage == "model_config":
            if self.model is not None and not all(self.model):  # None: the server's configured default
                raise ValueError(f"invalid model: {self.model!r}")
        elif stage == "session":
            self.session_id = await self.runner.client.create_session()
        elif stage == "transport":
            self._task = asyncio.get_running_loop().create_task(
                self.runner.run_turn(self.prompt, session_id=self.session_id))

    async def __aiter__(self) -> AsyncIterator[SourceEvent]:
        assert self._task is not None
        while True:
            getter = asyncio.ensure_future(self._queue.get())
            done, _ = await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()
            while not self._queue.empty():
                yield self._queue.get_nowait()
            break
        result = self._task.result()
        if result.status == RunStatus.OK:
            tokens = result.tokens or {}
            yield SourceEvent("complete", {"finish_reason": result.finish_reason or "stop",
                                           "usage": {"input_tokens": tokens.get("input", 0),
                                                     "output_tokens": tokens.get("output", 0)}})
            return
        if result.status == RunStatus.INTERRUPTED:
            yield SourceEvent("cancelled", {"reason": "user"})
            return
        code, retriable = _ERROR_CODES.get(result.status, ("source.error", False))
        raise SourceFailure(f"{result.status.name}: {result.error or result.finish_reason}", code, retriable)

    def abort(self) -> None:
        self.runner.interrupt()

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self.runner.interrupt()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.runner.aclose()
