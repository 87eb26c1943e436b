"""Time inside a blocking fault call does not count against the workload (docs/scenarios.md#fault-timeline), and a
recovery nobody could observe is not judged violated.

A failover returns once it is complete; on a busy machine that took 3.3 s of a 4 s workload, the workload
ended 20 ms after it, and ``recovers`` was judged "never closed" without a single op that could have closed
the breaker. The timeline after a blocking call now shifts by its duration, and ``recovers`` answers
"unknown" when the workload ended before a probe could close the breaker."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from pytest_cbchaos.scenario.model import FaultSpec
from pytest_cbchaos.scenario.results import Observations
from pytest_cbchaos.scenario.runner import FaultScheduler
from pytest_cbchaos.scenario.targets.breaker_store import BreakerStoreTarget


def _scheduler(faults: list[FaultSpec], duration_s: float = 1.0) -> FaultScheduler:
    ctx = SimpleNamespace(scenario=SimpleNamespace(name="s", faults=faults,
                                                   workload=SimpleNamespace(duration_s=duration_s)),
                          stop=threading.Event(), journal=SimpleNamespace(failures=lambda: []), state={})
    return FaultScheduler(ctx)


def test_the_workload_is_not_over_while_a_fault_call_runs_or_before_its_time_is_made_up() -> None:
    s = _scheduler([], duration_s=1.0)
    now = time.monotonic()
    s.started, s.blocked_s = now - 100.0, 0.0
    assert s.workload_over()
    s.in_action = True  # a failover still in progress, long after the planned end
    assert not s.workload_over()
    s.in_action = False
    s.started, s.blocked_s = now - 50.0, 60.0  # 1 s planned + 60 s inside fault calls: 11 s to go
    assert not s.workload_over()
    s.started = now - 70.0
    assert s.workload_over()


def test_the_timeline_after_a_blocking_call_shifts_by_its_duration() -> None:
    gate = threading.Event()
    started: list[tuple[str, float]] = []
    s = _scheduler([FaultSpec("failover", "redis", at=0.0), FaultSpec("flushall", "redis", at=0.05)])

    def apply(spec: FaultSpec) -> Any:
        started.append((spec.kind, time.monotonic()))
        if spec.kind == "failover":
            assert gate.wait(10.0)  # held until the test has seen the workload is not over
        return None

    s._apply = apply  # type: ignore[method-assign]
    s.start()
    deadline = time.monotonic() + 10.0
    while not started and time.monotonic() < deadline:
        time.sleep(0.005)  # polling interval, bounded by the deadline
    time.sleep(1.2)  # past the planned 1 s end, inside the call
    assert not s.workload_over() and [k for k, _ in started] == ["failover"]
    gate.set()
    s.join(10.0)
    assert [k for k, _ in started] == ["failover", "flushall"]
    assert s.blocked_s >= 1.2
    assert started[1][1] - s.started >= 0.05 + 1.2  # the second fault keeps its place after the first


def _recovery(ops: list[dict[str, Any]], transitions: list[dict[str, Any]], heal_ms: float) -> Any:
    obs = Observations()
    obs.transitions.extend(transitions)
    obs.metrics["params"] = {"fail_until_s": 0.0, "cooldown_s": 0.3}
    ctx = SimpleNamespace(journal=SimpleNamespace(to_dicts=lambda: [{"end_ns": 1}]), t_ms=lambda ns: heal_ms)
    BreakerStoreTarget._measure_recovery(obs, ctx, ops)
    return BreakerStoreTarget().check_recovers(obs, ctx)


OPENED = [{"t_ms": 4180.0, "worker": "w1", "from": "closed", "to": "open"}]


def _gate(t_ms: float, state: str = "open") -> dict[str, Any]:
    return {"t_ms": t_ms, "ok": True, "reply": {"state": state}}


def test_recovers_is_unknown_when_the_run_ended_before_a_probe_could_close_it() -> None:
    r = _recovery([_gate(4100.0), _gate(4200.0)], OPENED, heal_ms=4181.0)
    assert r.verdict == "unknown" and "before a probe could close the breaker (4480 ms" in r.detail


def test_recovers_is_violated_when_probes_were_possible_and_it_stayed_open() -> None:
    r = _recovery([_gate(4200.0), _gate(4500.0), _gate(4800.0)], OPENED, heal_ms=4181.0)
    assert r.verdict == "violated" and r.measured["probe_from_ms"] == 4480.0


def test_recovers_is_ok_when_it_closed_after_the_heal() -> None:
    r = _recovery([_gate(4200.0), _gate(4500.0, "closed")], OPENED, heal_ms=4181.0)
    assert r.verdict == "ok" and "closed 0.319 s after the last heal" in r.detail
