"""Mixed fleet (docs/breaker-design.md#mixed-fleet) on a live redis-server: a massgen-layout writer alongside our
store on one key. Rule N and legacy-claim leasing hold; the report lists what the mixed fleet violates (CB-18 and CB-24
for massgen workers, by design: massgen semantics for massgen workers, docs/breaker-design.md#massgen-compatibility
item 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_cbchaos.breaker.conformance.mixed_fleet import MassgenWriter, mixed_fleet_report, violated
from pytest_cbchaos.testing.breaker_mutants import AnchorlessFencingRedisStore, LegacyClaimIsFreeRedisStore

pytestmark = pytest.mark.requires_real_redis


def test_mixed_fleet_report(cbchaos_redis: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rep = mixed_fleet_report(cbchaos_redis)
    with capsys.disabled():
        print("\nmixed fleet report:", json.dumps(rep, indent=1, sort_keys=True))
    assert rep["rule_N"]["held"], rep["rule_N"]
    assert rep["legacy_claim_leasing"]["held"], rep["legacy_claim_leasing"]
    assert violated(rep) == ["CB-18", "CB-24 (massgen workers)"], rep
    assert all(v["held"] == v["expected"] for v in rep.values()), rep


def test_massgen_writer_layout(cbchaos_redis: Any) -> None:
    """The writer really is massgen-shaped: five fields, True/False, %.14g floats."""
    w = MassgenWriter(cbchaos_redis, "mfw")
    try:
        assert w.record_failure("b", 1, 60) == "open"
        raw = {k.decode(): v.decode() for k, v in cbchaos_redis.hgetall("mfw:b").items()}
        assert set(raw) == {"state", "failure_count", "last_failure_time", "open_until", "half_open_probe_active"}
        assert raw["half_open_probe_active"] == "False" and len(raw["open_until"].replace(".", "")) <= 14
    finally:
        cbchaos_redis.delete("mfw:b")


@pytest.mark.parametrize(("mutant", "item"), [(AnchorlessFencingRedisStore, "rule_N"),
                                              (LegacyClaimIsFreeRedisStore, "legacy_claim_leasing")])
def test_mixed_fleet_mutants_are_caught(cbchaos_redis: Any, mutant: type, item: str) -> None:
    try:
        rep = mixed_fleet_report(cbchaos_redis, mutant)
    except (AssertionError, TimeoutError) as exc:  # a mutant may derail the scenario itself
        pytest.fail(f"{mutant.__name__} derailed the scenario instead of being reported: {exc}")
    assert not rep[item]["held"], rep[item]
