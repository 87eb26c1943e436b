"""The stall watchdog's decisions on a scripted clock (docs/recovery-design.md#stall-watchdog).

The attempt is an in-process fake (our own logic under test is the watchdog): ``tick(now)`` is called
with chosen times and probes answer what the test scripts, so every deadline is exact.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pytest_cbchaos.recovery import RecoveryConfig
from pytest_cbchaos.recovery.status import Liveness, RunStatus, Verdict
from pytest_cbchaos.recovery.tracker import TurnTracker
from pytest_cbchaos.recovery.watchdog import Watchdog

ACCEPTED = 100.0
CFG = dict(stall_timeout=10.0, first_event_timeout=20.0, probe_timeout=2.0, tick=0.5, idle_grace=1.0,
           idle_poll_interval=0.0, start_timeout=5.0)


class FakeStream:
    def __init__(self) -> None:
        self.drops: list[str] = []
        self.last_heartbeat_at: float | None = None
        self.maintained: list[float] = []
        self.reconnects: list[str] = []

    def maintain(self, now: float) -> None:
        self.maintained.append(now)

    def force_reconnect(self, cause: str) -> None:
        self.reconnects.append(cause)


class FakeAttempt:
    """What the watchdog reads and calls on an attempt; probes answer ``probe_result``."""

    def __init__(self, *, accepted: float | None = ACCEPTED, **cfg: Any) -> None:
        self.config = RecoveryConfig(**{**CFG, **cfg})
        self.tracker = TurnTracker(session_id="s1")
        self.tracker.prompt_accepted_at = accepted
        self.verdict: Verdict | None = None
        self.wake = asyncio.Event()
        self.interrupted = self.resubscribed = self.sse_unavailable = False
        self.last_liveness = Liveness.UNKNOWN
        self.state = Liveness.ALIVE
        self.stream = FakeStream()
        self.probe_result: dict[str, Any] | BaseException = {"status": {"s1": {"type": "busy"}}, "messages_ok": True}
        self.gate: asyncio.Event | None = None  # when set up, probes wait here before answering
        self.probes: list[str] = []
        self.finished: list[str] = []
        self.spawned: list[str] = []

    def liveness(self) -> Liveness:
        return self.state

    def decide(self, status: RunStatus, reason: str, evidence: dict[str, Any], idle_confirmed: str | None = None) -> None:
        if self.verdict is None:
            self.verdict = Verdict(status, reason, evidence, 0.0, idle_confirmed)

    async def probe(self, why: str) -> dict[str, Any]:
        self.probes.append(why)
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.probe_result, BaseException):
            raise self.probe_result
        return dict(self.probe_result)

    async def finish_from_idle(self, kind: str) -> None:
        self.finished.append(kind)
        self.decide(RunStatus.OK, "stop", {}, kind)

    def spawn_finish(self, kind: str) -> None:
        self.spawned.append(kind)


def started(a: FakeAttempt, at: float) -> FakeAttempt:
    """The answer began at ``at`` (the bootstrap is over)."""
    a.tracker.first_event_at = a.tracker.last_progress_at = at
    return a


async def ticks(wd: Watchdog, *times: float) -> None:
    for now in times:
        await wd.tick(now)
        await asyncio.sleep(0)  # let a probe started by this tick finish
        await asyncio.sleep(0)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- order of the checks -------------------------------------------------------------------------

def test_interrupted_comes_first_and_a_verdict_ends_the_tick() -> None:
    async def main() -> None:
        a = FakeAttempt(max_turn_seconds=1.0)
        a.interrupted, a.state = True, Liveness.DEAD
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 500.0)
        assert (a.verdict.status, a.verdict.reason, a.verdict.evidence) == (RunStatus.INTERRUPTED, "interrupted", {})
        assert a.stream.maintained == [500.0] and a.last_liveness == Liveness.UNKNOWN  # liveness never ran
    run(main())


def test_liveness_before_stall_a_dead_server_is_unreachable_not_stalled() -> None:
    async def main() -> None:
        a = started(FakeAttempt(max_turn_seconds=1.0), 101.0)
        a.state = Liveness.DEAD
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 200.0)  # far past the stall deadline and the hard cap
        assert (a.verdict.status, a.verdict.reason, a.verdict.evidence) == (
            RunStatus.SERVER_UNREACHABLE, "server_unreachable", {"liveness": "dead"})
        assert a.last_liveness == Liveness.DEAD and a.probes == []
    run(main())


@pytest.mark.parametrize("state", [Liveness.ALIVE, Liveness.STOPPED, Liveness.UNKNOWN])
def test_a_live_stopped_or_unknown_server_is_left_to_the_stall_clock(state: Liveness) -> None:
    async def main() -> None:
        a = started(FakeAttempt(), 101.0)
        a.state = state
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 102.0)
        assert a.verdict is None and a.last_liveness == state
    run(main())


def test_an_unavailable_event_stream_is_unreachable_with_the_last_three_drops() -> None:
    async def main() -> None:
        a = FakeAttempt()
        a.sse_unavailable = True
        a.stream.drops = ["a", "b", "c", "d"]
        await ticks(Watchdog(a), 101.0)  # type: ignore[arg-type]
        assert (a.verdict.status, a.verdict.reason, a.verdict.evidence) == (
            RunStatus.SERVER_UNREACHABLE, "server_unreachable", {"cause": "sse_unavailable", "drops": ["b", "c", "d"]})
    run(main())


# -- completion and idle -------------------------------------------------------------------------

def test_idle_on_the_stream_finishes_at_once() -> None:
    async def main() -> None:
        a = FakeAttempt()
        a.tracker.idle_seen_at = 101.0
        await ticks(Watchdog(a), 101.5)  # type: ignore[arg-type]
        assert a.finished == ["sse"] and a.probes == []
    run(main())


@pytest.mark.parametrize(("probe", "finish"), [
    ({"status": {}, "messages_ok": True}, ["status"]),  # our session is not busy any more
    ({"status_error": "refused"}, ["completion"]),  # the status probe failed: completion evidence decides
    ({"status": {"s1": {"type": "busy"}}}, []),  # still busy: wait
])
def test_completion_evidence_is_confirmed_after_the_idle_grace(probe: dict[str, Any], finish: list[str]) -> None:
    async def main() -> None:
        a = started(FakeAttempt(), 101.0)
        a.tracker.completed_at = 110.0
        a.probe_result = probe
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 110.5)
        assert a.probes == []  # within the grace nothing is asked
        await ticks(wd, 111.0)
        assert a.probes == ["completion"] and a.finished == finish
        assert a.verdict is None if not finish else a.verdict.idle_confirmed == finish[0]
    run(main())


def test_completion_evidence_with_a_failed_probe_keeps_waiting() -> None:
    async def main() -> None:
        a = started(FakeAttempt(), 101.0)
        a.gate = gate = asyncio.Event()
        a.probe_result = RuntimeError("refused")
        a.resubscribed = True
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 110.0)
        a.tracker.completed_at = 110.0
        asyncio.get_running_loop().call_soon(gate.set)
        await ticks(wd, 111.0)  # completion collects the failed poll: no evidence of idle
        assert a.probes == ["poll"] and a.finished == [] and a.verdict is None
        assert wd.poll_results == []
    run(main())


def test_a_turn_with_completion_evidence_is_never_called_stalled() -> None:
    async def main() -> None:
        a = started(FakeAttempt(idle_grace=1000.0), 101.0)
        a.tracker.completed_at = 105.0
        await ticks(Watchdog(a), 150.0, 400.0)  # type: ignore[arg-type]
        assert a.verdict is None and a.probes == []
    run(main())


def test_completion_waits_for_a_running_probe_instead_of_starting_another() -> None:
    async def main() -> None:
        a = started(FakeAttempt(), 101.0)
        a.gate = gate = asyncio.Event()
        a.probe_result = {"status": {}}
        a.resubscribed = True
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 101.0)
        assert a.probes == ["poll"] and not a.resubscribed
        a.tracker.completed_at = 101.0
        asyncio.get_running_loop().call_soon(gate.set)
        await ticks(wd, 102.0)
        assert a.probes == ["poll"] and a.finished == ["status"] and wd.poll_results == [{"status": {}}]
    run(main())


def test_completion_that_collects_a_probe_showing_lost_events_records_the_progress_time() -> None:
    async def main() -> None:
        import time
        a = started(FakeAttempt(idle_grace=0.5), 101.0)
        a.gate = gate = asyncio.Event()
        a.probe_result = {"status": {"s1": {"type": "busy"}}, "sync_new_parts": 1}
        a.resubscribed = True
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 101.0)
        a.tracker.completed_at = 101.0
        asyncio.get_running_loop().call_soon(gate.set)
        before = time.monotonic()
        await ticks(wd, 102.0)
        assert a.stream.reconnects == ["sync_showed_lost_events"] and a.tracker.last_progress_at >= before
        assert a.finished == [] and a.probes == ["poll"]
    run(main())


def test_polls_after_a_resubscription_and_every_interval_only_once_the_prompt_is_accepted() -> None:
    async def main() -> None:
        a = started(FakeAttempt(idle_poll_interval=3.0, accepted=None), 101.0)
        wd = Watchdog(a)  # type: ignore[arg-type]
        a.resubscribed = True
        await ticks(wd, 101.0)
        assert a.probes == [] and a.resubscribed  # no prompt yet: nothing to poll
        a.tracker.prompt_accepted_at = ACCEPTED
        await ticks(wd, 101.0)
        assert a.probes == ["poll"] and not a.resubscribed
        await ticks(wd, 103.9)
        assert a.probes == ["poll"]  # the interval runs from the last probe
        await ticks(wd, 104.0)
        assert a.probes == ["poll", "poll"] and len(wd.poll_results) == 1
        await ticks(wd, 104.1)
        assert a.probes == ["poll", "poll"] and len(wd.poll_results) == 2  # collected on the next tick
    run(main())


@pytest.mark.parametrize("interval", [1.0, 3.0])
def test_the_first_periodic_poll_needs_no_resubscription(interval: float) -> None:
    async def main() -> None:
        a = started(FakeAttempt(idle_poll_interval=interval), 101.0)
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 101.0)
        assert a.probes == ["poll"]
        await ticks(wd, 101.0 + interval)
        assert a.probes == ["poll", "poll"]
    run(main())


def test_no_periodic_poll_when_the_interval_is_zero() -> None:
    async def main() -> None:
        a = started(FakeAttempt(idle_poll_interval=0.0), 101.0)
        await ticks(Watchdog(a), 101.0, 104.0, 105.0)  # type: ignore[arg-type]
        assert a.probes == []
    run(main())


# -- stall and bootstrap deadlines ---------------------------------------------------------------

def test_bootstrap_deadline_probes_ahead_and_ends_first_event_timeout() -> None:
    async def main() -> None:
        a = FakeAttempt()
        wd = Watchdog(a)  # type: ignore[arg-type]
        assert wd.deadline() == 120.0  # max(first_event 20, stall 10) after acceptance
        await ticks(wd, 117.4)  # before deadline - probe_timeout - tick
        assert a.probes == []
        await ticks(wd, 117.5, 118.0, 119.9)
        assert a.probes == ["stall"] and a.verdict is None  # one probe per deadline
        await ticks(wd, 120.2504)
        assert (a.verdict.status, a.verdict.reason) == (RunStatus.SESSION_STALLED, "first_event_timeout")
        assert a.verdict.evidence == {"first_event_wait_s": 20.25, "bootstrap_timeout_s": 20.0, "probe": {},
                                      "liveness": "alive", "active": False}  # ages in milliseconds
    run(main())


def test_stall_deadline_runs_from_the_last_progress() -> None:
    async def main() -> None:
        a = started(FakeAttempt(), 101.0)
        a.tracker.last_progress_at = 105.0
        a.tracker.active = True
        a.stream.last_heartbeat_at = 114.0
        wd = Watchdog(a)  # type: ignore[arg-type]
        assert not wd.bootstrapping() and wd.deadline() == 115.0
        await ticks(wd, 112.4)
        assert a.probes == []
        await ticks(wd, 112.5)
        assert a.probes == ["stall"]
        await ticks(wd, 114.99)
        assert a.verdict is None
        await ticks(wd, 115.2504)
        assert (a.verdict.status, a.verdict.reason) == (RunStatus.SESSION_STALLED, "session_stalled")
        ev = a.verdict.evidence
        assert (ev["last_progress_age_s"], ev["heartbeat_age_s"], ev["liveness"], ev["active"]) == (
            10.25, 1.25, "alive", True)  # milliseconds
        assert ev["probe"] == {}  # the probe's result was collected on an earlier tick
    run(main())


def test_stall_evidence_without_progress_or_heartbeat() -> None:
    async def main() -> None:
        a = started(FakeAttempt(), 103.0)
        a.tracker.last_progress_at = None
        a.probe_result = RuntimeError("down")
        wd = Watchdog(a)  # type: ignore[arg-type]
        assert wd.deadline() == 113.0  # the first event starts the stall clock
        await ticks(wd, 113.0)
        ev = a.verdict.evidence
        assert ev["last_progress_age_s"] == 13.0 and ev["heartbeat_age_s"] is None  # age from acceptance
        assert ev["probe"] == {"error": "RuntimeError('down')"}
    run(main())


def test_a_running_tool_and_a_retry_extend_the_deadline() -> None:
    async def main() -> None:
        a = started(FakeAttempt(tool_stall_timeout=40.0), 101.0)
        wd = Watchdog(a)  # type: ignore[arg-type]
        a.tracker.running_tools = {"t1"}
        assert wd.deadline() == 141.0
        a.tracker.running_tools = set()
        assert wd.deadline() == 111.0
        a.tracker.retry_until = 130.0
        assert wd.deadline() == 140.0  # retry_until + stall_timeout
        a.tracker.retry_until = 90.0
        assert wd.deadline() == 111.0
        await ticks(wd, 111.0)
        assert a.verdict.reason == "session_stalled"
    run(main())


def test_a_probe_that_shows_lost_events_is_progress_and_replaces_the_stream() -> None:
    async def main() -> None:
        a = started(FakeAttempt(), 101.0)
        a.probe_result = {"status": {"s1": {"type": "busy"}}, "messages_ok": True, "sync_new_parts": 2}
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 108.5)  # the stall probe starts: deadline 111 - 2 - 0.5
        assert a.probes == ["stall"]
        await ticks(wd, 111.0)
        assert a.verdict is None and a.stream.reconnects == ["sync_showed_lost_events"]
        assert a.tracker.last_progress_at == 111.0 and wd.deadline() == 121.0
        await ticks(wd, 118.5)
        assert a.probes == ["stall", "stall"]  # the new deadline gets its own probe
    run(main())


def test_the_deadline_waits_for_a_running_probe() -> None:
    async def main() -> None:
        a = started(FakeAttempt(), 101.0)
        a.gate = gate = asyncio.Event()
        a.probe_result = {"status": {"s1": {"type": "busy"}}, "sync_new_parts": 1}
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 110.0)
        assert a.probes == ["stall"]
        asyncio.get_running_loop().call_soon(gate.set)
        await ticks(wd, 111.0)  # probe started at 110, timeout 2 s: the tick waits for it
        assert a.verdict is None and a.stream.reconnects == ["sync_showed_lost_events"]
    run(main())


def test_a_running_poll_serves_the_stall_deadline() -> None:
    async def main() -> None:
        a = started(FakeAttempt(), 101.0)
        a.gate = asyncio.Event()  # never opened
        a.resubscribed = True
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 108.0, 108.5, 109.0)
        assert a.probes == ["poll"]  # no second probe for the stall deadline
    run(main())


def test_the_wait_at_the_deadline_ends_when_the_probe_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        a = started(FakeAttempt(), 101.0)
        a.gate = gate = asyncio.Event()
        a.probe_result = {"status": {"s1": {"type": "busy"}}}
        timeouts: list[float | None] = []
        real_wait = asyncio.wait

        async def spy(fs: Any, *, timeout: float | None = None, **kw: Any) -> Any:
            timeouts.append(timeout)
            gate.set()  # answer at once; the test is about the bound the watchdog asks for
            return await real_wait(fs, timeout=timeout, **kw)
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 110.0)  # the stall probe starts: it times out at 112
        monkeypatch.setattr(asyncio, "wait", spy)
        await asyncio.wait_for(wd.tick(111.5), 5.0)
        assert timeouts == [0.5]
        monkeypatch.undo()
        b = started(FakeAttempt(), 101.0)
        b.gate = gate = asyncio.Event()
        b.probe_result = {"status": {"s1": {"type": "busy"}}}
        wd = Watchdog(b)  # type: ignore[arg-type]
        await ticks(wd, 110.0)
        await asyncio.wait_for(wd.tick(113.0), 5.0)  # past the probe's own timeout: no wait at all
        assert b.verdict.reason == "session_stalled" and b.verdict.evidence["probe"] == {}
        gate.set()
    run(main())


def test_stall_timeout_zero_switches_off_only_the_stall_clock() -> None:
    async def main() -> None:
        a = FakeAttempt(stall_timeout=0.0)
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 120.0)
        assert a.verdict.reason == "first_event_timeout"
        b = started(FakeAttempt(stall_timeout=0.0), 101.0)
        await ticks(Watchdog(b), 10_000.0)  # type: ignore[arg-type]
        assert b.verdict is None and b.probes == []
    run(main())


def test_no_stall_before_the_prompt_is_accepted() -> None:
    async def main() -> None:
        a = FakeAttempt(accepted=None)
        await ticks(Watchdog(a), 10_000.0)  # type: ignore[arg-type]
        assert a.verdict is None and a.probes == []
    run(main())


# -- hard cap ------------------------------------------------------------------------------------

def test_hard_cap_ends_the_turn_incomplete() -> None:
    async def main() -> None:
        a = started(FakeAttempt(max_turn_seconds=5.0, stall_timeout=100.0), 101.0)
        wd = Watchdog(a)  # type: ignore[arg-type]
        await ticks(wd, 104.99)
        assert a.verdict is None
        await ticks(wd, 105.0)
        assert (a.verdict.status, a.verdict.reason, a.verdict.evidence) == (
            RunStatus.INCOMPLETE, "turn_timeout", {"max_turn_seconds": 5.0})
        b = FakeAttempt(max_turn_seconds=5.0, accepted=None)
        await ticks(Watchdog(b), 1000.0)  # type: ignore[arg-type]
        assert b.verdict is None
    run(main())


# -- what a probe's status says ------------------------------------------------------------------

def _probe_once(a: FakeAttempt, now: float) -> None:
    async def main() -> None:
        a.resubscribed = True
        await ticks(Watchdog(a), now, now)  # type: ignore[arg-type]
    run(main())


def test_absent_session_after_completion_finishes_via_status() -> None:
    a = started(FakeAttempt(), 101.0)
    a.tracker.completed_at = 106.0
    a.config = RecoveryConfig(**{**CFG, "idle_grace": 100.0})
    a.probe_result = {"status": {}}
    _probe_once(a, 106.5)
    assert a.spawned == ["status"] and a.verdict is None


@pytest.mark.parametrize(("errors", "status", "reason"), [
    ([], RunStatus.INCOMPLETE, "turn_not_started"), (["e1", "e2", "e3", "e4"], RunStatus.ERROR, "provider_error")])
def test_absent_session_with_no_answer_after_start_timeout(errors: list[str], status: RunStatus, reason: str) -> None:
    a = started(FakeAttempt(), 101.0)
    a.tracker.session_errors = list(errors)
    a.probe_result = {"status": {"other": {}}}
    _probe_once(a, 104.9)  # before start_timeout (5 s after acceptance)
    assert a.verdict is None
    _probe_once(a, 105.0)
    assert (a.verdict.status, a.verdict.reason) == (status, reason)
    assert a.verdict.evidence == ({"errors": ["e2", "e3", "e4"]} if errors else {"status": {"other": {}}})


def test_absent_session_while_bootstrapping_is_left_to_the_first_event_deadline() -> None:
    a = FakeAttempt()
    a.probe_result = {"status": {}}
    _probe_once(a, 110.0)
    assert a.verdict is None and a.spawned == []


@pytest.mark.parametrize(("reason", "messages_ok", "spawned"), [
    ("length", True, ["status"]), ("content-filter", True, ["status"]), ("stop", True, []), ("length", False, []),
    (None, True, [])])
def test_absent_session_after_a_failure_finish_reason_finishes(reason: str | None, messages_ok: bool,
                                                               spawned: list[str]) -> None:
    a = started(FakeAttempt(), 101.0)
    a.tracker.assistants = {"a1": {"id": "a1"}}
    a.tracker.user_message_id = "u1"
    a.tracker.finish_reason = reason
    a.probe_result = {"status": {}, "messages_ok": messages_ok}
    _probe_once(a, 102.0)
    assert a.spawned == spawned and a.verdict is None
    a.tracker.user_message_id = None
    a.spawned = []
    _probe_once(a, 102.0)
    assert a.spawned == []


def test_a_probe_without_a_status_map_decides_nothing() -> None:
    a = started(FakeAttempt(), 101.0)
    a.tracker.completed_at = 101.0
    a.config = RecoveryConfig(**{**CFG, "idle_grace": 100.0})
    a.probe_result = {"status_error": "timeout"}
    _probe_once(a, 120.0)
    assert a.spawned == [] and a.verdict is None


# -- the timer loop ------------------------------------------------------------------------------

def test_run_ticks_until_a_verdict_and_cancels_its_probe() -> None:
    async def main() -> None:
        import time
        now = time.monotonic()  # run() reads the real clock
        a = started(FakeAttempt(tick=0.05, stall_timeout=1000.0, accepted=now), now)
        cancelled = asyncio.Event()

        async def hanging(why: str) -> dict[str, Any]:
            a.interrupted = True  # the next tick decides
            a.wake.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return {}
        a.probe = hanging  # type: ignore[method-assign]
        a.resubscribed = True
        a.wake.set()
        wd = Watchdog(a)  # type: ignore[arg-type]
        await asyncio.wait_for(wd.run(), 5.0)
        assert a.verdict.reason == "interrupted" and cancelled.is_set() and not a.wake.is_set()
        assert len(a.stream.maintained) == 2
    run(main())


def test_run_ticks_on_the_timer_alone() -> None:
    async def main() -> None:
        a = started(FakeAttempt(tick=0.05), 101.0)
        a.interrupted = True  # nothing wakes the loop: the tick timer must
        wd = Watchdog(a)  # type: ignore[arg-type]
        await asyncio.wait_for(wd.run(), 5.0)
        assert a.verdict.reason == "interrupted" and len(a.stream.maintained) == 1
    run(main())
