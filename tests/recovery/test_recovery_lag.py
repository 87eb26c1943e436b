"""Lag-aware deadlines (docs/recovery.md, "Lag-aware deadlines"): the sampler, the judge, and M16
(a runner that detects late) caught whatever the lag, with the lag forced by blocking the runner's loop."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner
from pytest_cbchaos.lag import LagSampler, combined
from pytest_cbchaos.recovery.status import RunStatus
from pytest_cbchaos.scenario.checks import recovery_deadline
from pytest_cbchaos.scenario.targets import Observations
from pytest_cbchaos.testing.runner_mutants import MUTANTS
from tests.recovery.test_recovery_mutants_extra import FAST, FakeOpencode, fake  # noqa: F401 - fixture


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_window_sums_the_late_parts_inside_it() -> None:
    clock = Clock()
    s = LagSampler(interval=0.1, clock=clock)
    s.note_wake(100.1, 100.1)    # on time
    s.note_wake(100.2, 100.7)    # 0.5 s late
    s.note_wake(100.8, 100.85)   # 0.05 s late
    clock.now = 100.9  # next wake-up due at 100.95: none overdue yet
    w = s.window(100.0, 101.0)
    assert (round(w.sum_s, 6), round(w.max_s, 6), w.samples, w.covered) == (0.55, 0.5, 2, True)
    part = s.window(100.5, 100.82)  # clipped: 0.2 of the first, 0.02 of the second
    assert round(part.sum_s, 6) == 0.22
    assert s.window(100.9, 101.0).sum_s == 0.0
    assert s.window(99.0, 101.0).covered is False  # the sampler started at 100.0


def test_an_overdue_wakeup_counts_while_it_is_overdue() -> None:
    clock = Clock()
    s = LagSampler(interval=0.1, clock=clock)
    s.note_wake(100.1, 100.1)    # next due 100.2
    clock.now = 101.2            # the sampler has not run for 1 s
    assert round(s.window(100.0).sum_s, 6) == 1.0


def test_samplers_of_one_process_are_not_added() -> None:
    a = SimpleNamespace(sum_s=0.4, max_s=0.4)
    b = SimpleNamespace(sum_s=0.7, max_s=0.2)
    assert combined([a, b]) is b  # type: ignore[list-item]


def test_interval_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        LagSampler(interval=0)


def test_asyncio_sampler_sees_a_blocked_loop() -> None:
    async def main() -> tuple[float, float, bool]:
        s = LagSampler(interval=0.01)
        s.ensure_task()
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        time.sleep(0.3)  # the loop is blocked: forced lag
        t1 = time.monotonic()
        await asyncio.sleep(0.05)
        w = s.window(t0, t1)
        await s.stop_task()
        await asyncio.sleep(0.02)
        return w.sum_s, t1 - t0, s.window(time.monotonic() - 0.01).covered
    lag, blocked, covered_after_stop = asyncio.run(main())
    assert blocked - 0.011 <= lag <= blocked, (lag, blocked)  # all but the part before the sampler was due
    assert covered_after_stop is False  # a stopped sampler does not vouch for later windows


def _obs(measured: float | None, lag: float | None) -> Observations:
    obs = Observations()
    obs.recoveries["sse-replaced"] = measured
    if lag is not None:
        obs.metrics["recovery_lag"] = {"sse-replaced": {"lag_s": lag, "lag_max_s": lag, "lag_source": "runner"}}
    return obs


def _spec(deadline: float) -> Any:
    return SimpleNamespace(name="sse-replaced", params={"deadline_s": deadline})


def test_judge_subtracts_the_observed_lag_and_reports_all_three() -> None:
    ok = recovery_deadline(_spec(3.5), _obs(4.68, 1.3))
    assert ok.verdict == "ok", ok.detail
    assert "4.680 s measured - 1.300 s observed lag = 3.380 s <= 3.5 s" in ok.detail
    assert ok.measured["measured_s"] == 4.68 and ok.measured["lag_s"] == 1.3 and ok.measured["deadline_s"] == 3.5
    late = recovery_deadline(_spec(3.5), _obs(4.68, 0.9))  # late by more than the lag
    assert late.verdict == "violated" and "= 3.780 s > 3.5 s (late by more than" in late.detail
    assert late.counterexample["lag_s"] == 0.9


def test_judge_without_observed_lag_is_strict() -> None:
    res = recovery_deadline(_spec(3.5), _obs(3.6, None))
    assert res.verdict == "violated" and res.measured["lag_s"] == 0.0
    assert recovery_deadline(_spec(3.5), _obs(None, 5.0)).verdict == "violated"


# -- M16: late detection, judged on the runner's own sampler -------------------------------------------
def _stall_detection(fake: FakeOpencode, runner_cls: type[RecoveryRunner], hog_s: float) -> dict[str, Any]:
    """One stalled turn (no budget) while the runner's loop is blocked ``hog_s`` of every 0.25 s."""
    fake.plans.extend(["stall"])
    runner = runner_cls(fake, RecoveryConfig.for_tests(**{**FAST, "max_recoveries": 0}))
    stop = threading.Event()

    def hog() -> None:
        while not stop.wait(0.25):
            runner._loop.call_soon_threadsafe(time.sleep, hog_s)  # forced lag on the runner's loop

    th = threading.Thread(target=hog, daemon=True)
    if hog_s:
        th.start()
    try:
        res = runner.run_turn("stall token-lag")
        verdict = next(h for h in runner.history if h["type"] == "verdict")
        age = float(res.attempts[0].evidence["last_progress_age_s"])
        window = runner.core.lag.window(verdict["verdict_at"] - age, verdict["verdict_at"])
    finally:
        stop.set()
        runner.close()
    assert res.attempts[0].verdict == RunStatus.SESSION_STALLED
    obs = Observations(recoveries={"stall-detected": age})
    obs.metrics["recovery_lag"] = {"stall-detected": {"lag_s": window.sum_s, "lag_max_s": window.max_s}}
    check = recovery_deadline(SimpleNamespace(name="stall-detected", params={"deadline_s": DEADLINE}), obs)
    return {"age": age, "lag": window.sum_s, "covered": window.covered, "check": check,
            "history_lag": verdict.get("lag_s")}


DEADLINE = FAST["stall_timeout"] + 1.0  # as the shipped scenarios: stall_timeout + 1 s
LATE_BY = 2.0 * FAST["stall_timeout"]   # M16's lag-free lateness, > DEADLINE


@pytest.mark.parametrize("hog_s", [0.0, 0.15], ids=["idle", "loop-blocked"])
def test_real_runner_meets_the_lag_aware_deadline(fake: FakeOpencode, hog_s: float) -> None:
    out = _stall_detection(fake, RecoveryRunner, hog_s)
    assert out["covered"] and out["history_lag"] is not None
    assert out["check"].verdict == "ok", out
    if hog_s:
        assert out["lag"] >= 0.5, out  # the blocked loop was observed, not assumed


@pytest.mark.parametrize("hog_s", [0.0, 0.15], ids=["idle", "loop-blocked"])
def test_late_detection_m16_is_caught_whatever_the_lag(fake: FakeOpencode, hog_s: float) -> None:
    out = _stall_detection(fake, MUTANTS["M16"], hog_s)
    assert out["check"].verdict == "violated", out
    assert out["age"] - out["lag"] >= LATE_BY - 1e-6, out  # by construction, not by timing


def test_scenario_uses_the_runner_sampler_when_it_covers_the_window() -> None:
    from pytest_cbchaos.scenario.targets.recovery import RecoveryTarget

    clock = Clock()
    runner_lag, here = LagSampler(interval=0.1, clock=clock), LagSampler(interval=0.1, clock=clock)
    here.note_wake(99.0, 99.0)       # the scenario's sampler ran from 98.9
    here.note_wake(100.0, 100.4)     # 0.4 s late
    runner_lag.note_wake(100.1, 100.1)  # the runner's from 100.0
    runner_lag.note_wake(100.2, 100.5)  # 0.3 s late
    clock.now = 100.55
    obs = Observations()
    obs.metrics["recovery_windows"] = {"stall-detected": (100.0, 100.5), "unreachable-detected": (99.5, 100.5)}
    runner = SimpleNamespace(core=SimpleNamespace(lag=runner_lag))
    RecoveryTarget._observe_lag(obs, SimpleNamespace(state={"lag": here}), runner)
    lag = obs.metrics["recovery_lag"]
    assert lag["stall-detected"]["lag_source"] == "runner" and lag["stall-detected"]["lag_s"] == 0.3
    assert lag["stall-detected"]["scenario_lag_s"] == 0.4
    assert lag["unreachable-detected"]["lag_source"] == "scenario"  # the runner's began after 99.5
    assert lag["unreachable-detected"]["lag_s"] == 0.4
