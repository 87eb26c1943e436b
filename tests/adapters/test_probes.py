"""Each weakness probe (docs/fault-kit-design.md#weakness-probes) flags a documented weakness in a third-party library
(so the probe can fail) and reports our own breaker as not weak. Real redis-server through the proxy."""

from __future__ import annotations

import json

import pytest

from pytest_cbchaos.adapters import get_adapter, unavailable_adapters
from pytest_cbchaos.adapters.probes import PROBES, ProbeContext, run_probe

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
