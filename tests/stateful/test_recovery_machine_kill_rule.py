"""The machine's ``kill_mid_turn`` rule kills at a known point: after the runner saw the answer
begin (past the bootstrap, docs/recovery.md "Cold start"), and marks the fault on the runner so
INV-4 is judged on ``fault_to_verdict_s`` and its lag. A scripted env and runner (unit test of the
machine's own logic) force the order: the runner publishes its first event only once someone
looks at its history, so a rule that kills right after the provider stalled kills in bootstrap."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

from pytest_cbchaos.recovery.status import AttemptRecord, RunStatus, TurnResult
from pytest_cbchaos.stateful.recovery_machine import Expectation, InvariantViolation, check_turn, recovery_machine


class _LookedHistory:
    """A runner history that notes when it is first read."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.looked = threading.Event()

    def append(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.looked.set()
        return iter(list(self.entries))


class _ScriptedRunner:
    def __init__(self, env: "_ScriptedEnv") -> None:
        self.env = env
        self.history = _LookedHistory()
        self.marked: float | None = None

    def mark_fault(self, at: float | None = None) -> None:
        self.marked = at

    def run_turn(self, prompt: str, *, session_id: str | None = None) -> TurnResult:
        started = time.monotonic()
        self.history.append({"type": "attempt_start", "turn": 1, "t": started})
        self.env.stalled.set()  # the provider got the request and stalls mid-answer
        self.history.looked.wait(10)  # the answer's first event is published only once looked for
        self.history.append({"type": "first_event", "turn": 1, "t": time.monotonic()})
        self.env.killed.wait(10)
        died = time.monotonic()
        first = AttemptRecord(1, 1, verdict=RunStatus.SERVER_UNREACHABLE, reason="server_unreachable",
                              started_at=started, ended_at=died, prompt=prompt,
                              fault_to_verdict_s=None if self.marked is None else round(died - self.marked, 3),
                              lag_s=0.0)
        second = AttemptRecord(2, 2, verdict=RunStatus.OK, reason="stop", started_at=died, ended_at=died,
                               prompt=prompt)
        return TurnResult(RunStatus.OK, "stop", text="ok", idle_confirmed="sse", recoveries_used=1,
                          attempts=[first, second])

    def close(self) -> None:
        pass


class _ScriptedEnv:
    stall_timeout = 2.0

    def __init__(self) -> None:
        self.stalled = threading.Event()
        self.killed = threading.Event()
        self.runners: list[_ScriptedRunner] = []
        self.kill_saw_answer: bool | None = None

    def make_runner(self, **config: Any) -> _ScriptedRunner:
        self.runners.append(_ScriptedRunner(self))
        return self.runners[-1]

    def script_stall(self, text: str = "stalled") -> None:
        pass

    def wait_provider_stalled(self, timeout: float) -> None:
        assert self.stalled.wait(timeout)

    def kill_server(self) -> None:
        entries = self.runners[-1].history.entries
        self.kill_saw_answer = any(e["type"] == "first_event" for e in entries)
        self.killed.set()

    def release_provider(self) -> None:
        pass

    def provider_main_requests(self) -> list[Any]:
        return []

    def clean(self) -> None:
        pass


def test_kill_lands_after_the_answer_began_and_is_marked_on_the_runner() -> None:
    env = _ScriptedEnv()
    machine = recovery_machine(env, enabled={"kill"})()  # type: ignore[arg-type]
    machine.kill_mid_turn()
    exp, _, _ = machine.results[-1]
    assert env.kill_saw_answer is True, "killed while the runner was still in its bootstrap"
    assert exp.fault_at is not None and env.runners[-1].marked == exp.fault_at
    machine.last_turn_honest()  # an honest fast death passes


def test_a_death_left_to_the_first_event_deadline_is_named_inv4_even_when_the_turn_overran() -> None:
    """A kill during the bootstrap that a runner reports only at the 60 s first-event deadline makes
    the turn overrun its INV-20 bound too; the violation names the misjudged death (INV-4)."""
    exp = Expectation("kill", "p", 1, 2.0, 84.0, first_verdict=RunStatus.SERVER_UNREACHABLE,
                      first_verdict_within_s=2.0, final_status={RunStatus.OK}, fault_at=100.0)
    first = AttemptRecord(1, 1, verdict=RunStatus.SESSION_STALLED, reason="first_event_timeout",
                          started_at=99.0, ended_at=160.0)
    second = AttemptRecord(2, 2, verdict=RunStatus.OK, reason="stop", started_at=170.0, ended_at=185.0)
    res = TurnResult(RunStatus.OK, "stop", text="ok", idle_confirmed="sse", recoveries_used=1,
                     attempts=[first, second])
    with pytest.raises(InvariantViolation, match="INV-4"):
        check_turn(exp, res, 85.5, [])


def test_an_overrun_alone_is_still_inv20() -> None:
    exp = Expectation("kill", "p", 1, 2.0, 84.0, first_verdict=RunStatus.SERVER_UNREACHABLE,
                      first_verdict_within_s=2.0, final_status={RunStatus.OK}, fault_at=100.0)
    first = AttemptRecord(1, 1, verdict=RunStatus.SERVER_UNREACHABLE, reason="server_unreachable",
                          started_at=99.0, ended_at=101.0)
    second = AttemptRecord(2, 2, verdict=RunStatus.OK, reason="stop", started_at=101.0, ended_at=185.0)
    res = TurnResult(RunStatus.OK, "stop", text="ok", idle_confirmed="sse", recoveries_used=1,
                     attempts=[first, second])
    with pytest.raises(InvariantViolation, match="INV-20"):
        check_turn(exp, res, 86.0, [])
