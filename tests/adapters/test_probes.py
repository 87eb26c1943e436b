"""Each weakness probe (docs/fault-kit-design.md#weakness-probes) flags a documented weakness in a third-party library
(so the probe can fail) and reports our own breaker as not weak. Real redis-server through the proxy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_cbchaos.adapters import get_adapter, unavailable_adapters
from pytest_cbchaos.adapters.probes import PROBES, ProbeContext, ProbeError, judge_ticks, run_probe
from pytest_cbchaos.lag import LagSampler

_SKIP = unavailable_adapters()


def _cls(name: str):
    if name in _SKIP:
        pytest.skip(_SKIP[name])
    return get_adapter(name)


# (probe, third-party library expected weak, kwargs, what the measured value must show)
WEAK = [
    ("W-HERD", "pybreaker", {}, lambda r: r.measured == 8 and r.detail["rejected"] == 0),
    ("W-OPEN-TIME", "pybreaker", {}, lambda r: r.measured is not None and r.measured < 0.85),
    ("W-OPEN-TIME", "aiobreaker_redis", {"cooldown_s": 0.5}, lambda r: r.detail["first_gate_by_other_worker"]
     == "executed"),  # EX 0 rejected by Redis, error swallowed: OPEN never shared
    ("W-OPEN-TIME", "circuitbreaker", {}, lambda r: r.measured is not None and r.measured < 0.1),
    ("W-LOST-COUNT", "circuitbreaker", {}, lambda r: r.measured == r.detail["recorded"]),
    ("W-DIVERGENCE", "aiobreaker_redis", {}, lambda r: r.detail["samples"][0]["b_retry_after"] == 0.0),
    ("W-DIVERGENCE", "circuitbreaker", {}, lambda r: r.detail["samples"][0]["b"] == "closed"),
    ("W-REDIS-DOWN", "pybreaker", {}, lambda r: r.detail["state_after_outage"] == "closed"),
    ("W-REDIS-DOWN", "aiobreaker_redis", {}, lambda r: r.detail["failures_counted"] == 0),
    ("W-LOOP-BLOCK", "aiobreaker", {}, lambda r: r.measured >= 0.14),  # >= one 150 ms round trip
    ("W-SERIAL", "pybreaker", {}, lambda r: r.measured == 1),
    ("W-NO-TTL", "pybreaker", {}, lambda r: r.measured >= 3),
    ("W-NO-TTL", "aiobreaker", {}, lambda r: r.measured >= 2),
    ("W-CONFIG", "pybreaker", {}, lambda r: r.detail["other_breaker_state_after_trip"] == "open"),
    ("W-CONFIG", "aiobreaker", {}, lambda r: r.detail["other_breaker_state_after_trip"] == "open"),
]


@pytest.mark.parametrize("probe,lib,kw,shows", WEAK, ids=[f"{p}-{lib}" for p, lib, *_ in WEAK])
def test_probe_flags_third_party(probe, lib, kw, shows, cbchaos_probe_context, cbchaos_weakness_probes) -> None:
    r = cbchaos_weakness_probes.run(probe, cbchaos_probe_context, _cls(lib), **kw)
    assert r.weak, r
    assert shows(r), r
    assert probe in get_adapter(lib).known_weaknesses


OURS = [("W-HERD", "cbchaos"), ("W-OPEN-TIME", "cbchaos"), ("W-LOST-COUNT", "cbchaos"),
        ("W-DIVERGENCE", "cbchaos"), ("W-REDIS-DOWN", "cbchaos"), ("W-LOOP-BLOCK", "cbchaos_async"),
        ("W-SERIAL", "cbchaos"), ("W-NO-TTL", "cbchaos"), ("W-CONFIG", "cbchaos")]


@pytest.mark.parametrize("probe,name", OURS, ids=[p for p, _ in OURS])
def test_our_breaker_not_weak(probe, name, cbchaos_probe_context, cbchaos_weakness_probes) -> None:
    r = cbchaos_weakness_probes.run(probe, cbchaos_probe_context, _cls(name))
    assert not r.weak, r
    assert r.measured is not None  # measured, not n/a


def test_loop_block_passes_a_truly_async_library(cbchaos_probe_context) -> None:
    """The loop-lag threshold is not so tight that an async-client library fails it."""
    assert not run_probe("W-LOOP-BLOCK", cbchaos_probe_context, _cls("aiobreaker_redis")).weak


def test_collector_records_user_properties(request, cbchaos_probe_context, cbchaos_weakness_probes) -> None:
    cbchaos_weakness_probes.run("W-NO-TTL", cbchaos_probe_context, _cls("cbchaos"))
    props = [v for k, v in request.node.user_properties if k == "cbchaos_probe"]
    assert len(props) == 1
    d = json.loads(props[0])
    assert {"id", "adapter", "measured", "threshold", "weak", "detail"} <= d.keys()
    assert d["id"] == "W-NO-TTL" and d["adapter"] == "cbchaos"


def test_unknown_probe_id_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown probe id 'W-NOPE'.*W-HERD"):
        run_probe("W-NOPE", ProbeContext("redis://127.0.0.1:1/0", None), _cls("cbchaos"))
    assert set(PROBES) == {"W-HERD", "W-OPEN-TIME", "W-LOST-COUNT", "W-DIVERGENCE", "W-REDIS-DOWN",
                           "W-LOOP-BLOCK", "W-SERIAL", "W-NO-TTL", "W-CONFIG"}


def test_linear_hook_records_history(cbchaos_probe_context) -> None:
    recorder_mod = pytest.importorskip("pytest_cbchaos.history.recorder")
    from pytest_cbchaos.adapters import AdapterConfig
    from pytest_cbchaos.adapters.probes import record_breaker_history

    cls = _cls("pybreaker")
    cfg = AdapterConfig(failure_threshold=2, cooldown_s=30)
    ads = [cls().build(cbchaos_probe_context.redis_url, cbchaos_probe_context.password, "linear-hook", cfg)
           for _ in range(2)]
    try:
        rec = recorder_mod.Recorder(2)
        record_breaker_history(ads, rec, ops_per_worker=6, fail_every=2)
        rec.close()
    finally:
        for a in ads:
            a.close()
    assert len(rec) == 2 * 2 * 6  # an invoke and a completion per op, nothing pending



def _scripted_sampler(late: list[tuple[float, float]]) -> LagSampler:
    """A stopped LagSampler whose late wake-ups are ``late`` (scripted, no thread)."""
    sampler = LagSampler(interval=0.01, clock=lambda: 100.0)
    sampler.note_wake(0.0, 0.0)
    for due, woke in late:
        sampler.note_wake(due, woke)
    sampler.stop()
    return sampler


def _whole_run_lag(ticks: Any, sampler: LagSampler) -> tuple[float, float, float]:
    """Weakened: the whole run's scheduling lag taken off the worst tick."""
    raw = max(lag for _, _, lag in ticks)
    off = sampler.window(ticks[0][0], ticks[-1][1]).sum_s
    return raw, raw - off, off


def _raw_lag(ticks: Any, sampler: LagSampler) -> tuple[float, float, float]:
    """Weakened: no scheduling lag taken off."""
    raw = max(lag for _, _, lag in ticks)
    return raw, raw, 0.0


# (ticks (start, end, loop lag), the sampler's late wake-ups): a 150 ms block while the sampler ran on time
# (a later tick as late as the sampler), and the same loop lag while the sampler was as late, in that tick
BLOCKED = ([(1.0, 1.16, 0.15), (2.5, 2.71, 0.2)], [(2.5, 2.7)])
BUSY = ([(1.0, 1.16, 0.15)], [(1.005, 1.155)])


@pytest.mark.parametrize("judge, weak", [
    (judge_ticks, {"blocked": True, "busy": False}),
    (_raw_lag, {"blocked": True, "busy": True}),  # a busy machine read as a blocked loop
    (_whole_run_lag, {"blocked": False, "busy": False}),  # a real block hidden behind later lag
])
def test_loop_block_judgement_is_per_tick(judge: Any, weak: dict[str, bool]) -> None:
    """W-LOOP-BLOCK's judgement on scripted ticks and lag; each weakened judgement gets one case wrong."""
    got = {name: judge(ticks, _scripted_sampler(late))[1] > 0.1
           for name, (ticks, late) in {"blocked": BLOCKED, "busy": BUSY}.items()}
    assert got == weak


def test_loop_block_without_ticks_is_an_error() -> None:
    with pytest.raises(ProbeError, match="nothing observed"):
        judge_ticks([], _scripted_sampler([]))
