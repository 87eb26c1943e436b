"""Every (status, reason) cell of the runner's verdict table (``VERDICT_CELLS``, docs/recovery.md) is
reached on every run by a scripted scenario on ``FakeOpencode`` (no opencode start): the walk prints
the table and fails on a cell no scenario reached."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner
from pytest_cbchaos.recovery.attempt import Attempt
from pytest_cbchaos.recovery.status import VERDICT_CELLS, RunStatus
from pytest_cbchaos.recovery.supervisor import AsyncRecoveryRunner
from tests.recovery.test_recovery_mutants_extra import FAST, FakeOpencode

pytestmark = pytest.mark.timeout(90)
DOC = Path(__file__).resolve().parents[2] / "docs" / "recovery.md"
Cell = tuple[RunStatus, str]


class CellFake(FakeOpencode):
    """``FakeOpencode`` plus the plans the verdict table needs: ``provider_error`` (a session error,
    then idle, no answer), ``noanswer`` (idle right after the user message); ``restart_fails``."""

    restart_fails = False

    def restart(self) -> None:
        if self.restart_fails:
            raise RuntimeError("scripted: the next generation did not start")
        super().restart()

    async def _turn(self, sid: str, uid: str, plan: str) -> None:
        if plan in ("provider_error", "noanswer"):
            if plan == "provider_error":
                self.publish("session.error", sessionID=sid, error={"name": "APIError", "data": {"message": "500"}})
            self._turns.pop(sid, None)
            self._idle(sid)
            return
        await super()._turn(sid, uid, plan)


class _RecordingAttempt(Attempt):
    """Records what each attempt decided, including verdicts no ``TurnResult`` carries (a cancelled attempt)."""

    async def run(self):  # type: ignore[override]
        try:
            return await super().run()
        finally:
            if self.verdict is not None:
                self.runner.decided.append((self.verdict.status, self.verdict.reason))


class _StubbornConsumerAttempt(_RecordingAttempt):
    """A consumer task that ignores its stop for longer than ``consumer_stop_timeout``."""

    async def run(self):  # type: ignore[override]
        async def stubborn() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await asyncio.sleep(self.config.consumer_stop_timeout + 0.5)  # outlives the stop bound, then ends
        self.spawn(stubborn())
        return await super().run()


class _Core(AsyncRecoveryRunner):
    attempt_class = _RecordingAttempt

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.decided: list[Cell] = []


class _LeakCore(_Core):
    attempt_class = _StubbornConsumerAttempt


def _runner(core: type[_Core]) -> type[RecoveryRunner]:
    return type("CellRunner", (RecoveryRunner,), {"async_class": core})


def _config(**kw: Any) -> RecoveryConfig:
    return RecoveryConfig.for_tests(**{**FAST, "max_recoveries": 0, **kw})


def _wait_history(core: _Core, kind: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(h["type"] == kind for h in core.history):
        assert time.monotonic() < deadline, f"no {kind} in the runner's history"
        time.sleep(0.02)  # the runner's loop writes history; bounded poll


def _turn(plans: list[str], core: type[_Core] = _Core, during: Callable[[Any], None] | None = None,
          setup: Callable[[CellFake], None] | None = None, **cfg: Any) -> list[Cell]:
    """One turn on a fresh fake with ``plans``; ``during(runner)`` runs beside it. Returns the cells its
    attempts decided and the turn's final one (a failed restart is decided by the supervisor)."""
    fake = CellFake().start()
    try:
        fake.plans.extend(plans)
        if setup is not None:
            setup(fake)
        runner = _runner(core)(fake, _config(**cfg))
        try:
            out: list[Any] = []
            th = threading.Thread(target=lambda: out.append(runner.run_turn("cell turn")), daemon=True)
            th.start()
            if during is not None:
                during(runner)
            th.join(30)
            assert out, "the turn did not end"
            return list(runner.core.decided) + [(out[0].status, out[0].finish_reason)]  # + the supervisor's
        finally:
            runner.close()
    finally:
        fake.stop()


def _finish(reason: str) -> Callable[[], list[Cell]]:
    return lambda: _turn(["ok"], setup=lambda f: setattr(f, "finish", reason))


def _interrupt(runner: Any) -> None:
    _wait_history(runner.core, "first_event")
    runner._loop.call_soon_threadsafe(runner.core.interrupt)


def _cancelled() -> list[Cell]:
    """The asyncio core's ``run_turn`` task cancelled mid-turn: the attempt decides ``cancelled``."""
    fake = CellFake().start()
    fake.plans.extend(["stall"])

    async def main() -> list[Cell]:
        core = _Core(fake, _config())
        task = asyncio.get_running_loop().create_task(core.run_turn("cell turn"))
        while not any(h["type"] == "first_event" for h in core.history):
            await asyncio.sleep(0.02)  # bounded by the test timeout
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await core.aclose()
        return core.decided
    try:
        return asyncio.run(main())
    finally:
        fake.stop()


SCENARIOS: dict[str, Callable[[], list[Cell]]] = {
    "stop": _finish("stop"), "end_turn": _finish("end_turn"), "content-filter": _finish("content-filter"),
    "error": _finish("error"), "length": _finish("length"), "max_tokens": _finish("max_tokens"),
    "tool-calls": _finish("tool-calls"),
    "provider_error": lambda: _turn(["provider_error"]),
    "turn_not_started": lambda: _turn(["noanswer"]),
    "request_error": lambda: _turn(["ok"], setup=lambda f: setattr(f, "create_status", 400)),
    "dead_restart_failed": lambda: _turn(["dead"], setup=lambda f: setattr(f, "restart_fails", True),
                                         max_recoveries=1),
    "session_stalled": lambda: _turn(["stall"]),
    "first_event_timeout": lambda: _turn(["mute"], first_event_timeout=1.5),
    "turn_timeout": lambda: _turn(["stall"], stall_timeout=0, max_turn_seconds=1.0),
    "interrupted": lambda: _turn(["stall"], during=_interrupt),
    "cancelled": _cancelled,
    "consumer_leak": lambda: _turn(["ok"], core=_LeakCore),
}


def test_every_verdict_cell_is_reached() -> None:
    with ThreadPoolExecutor(4) as pool:  # the scenarios mostly wait on scripted deadlines
        futures = {name: pool.submit(fn) for name, fn in SCENARIOS.items()}
        reached = {name: f.result(timeout=60) for name, f in futures.items()}
    seen = {cell for cells in reached.values() for cell in cells}
    rows = [f"{'status':<19} {'reason':<20} reached by"]
    for cell in VERDICT_CELLS:
        by = [name for name, cells in reached.items() if cell in cells]
        rows.append(f"{cell[0].name:<19} {cell[1]:<20} {', '.join(by) or 'NOT REACHED'}")
    print("\n".join(rows))
    missing = [f"{s.name}/{r}" for s, r in VERDICT_CELLS if (s, r) not in seen]
    assert missing == [], "\n".join(rows)
    unlisted = sorted(f"{s.name}/{r}" for s, r in seen - set(VERDICT_CELLS))
    assert unlisted == [], f"verdicts outside VERDICT_CELLS: {unlisted}"


def test_doc_lists_every_verdict_cell() -> None:
    text = DOC.read_text()
    table = text[text.index("| status | reason | when |"):]
    table = table[:table.index("\n\n")]
    missing = [f"{s.name}/{r}" for s, r in VERDICT_CELLS if f"`{s.name}`" not in table or f"`{r}`" not in table]
    assert missing == [], f"docs/recovery.md verdict table lacks {missing}"
