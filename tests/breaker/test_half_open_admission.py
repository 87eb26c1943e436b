"""Breaker-level HALF_OPEN admission (docs/breaker-design.md#half-open-admission) on every store path
(threads), with the mutants it must catch; processes on real Redis: test_multiprocess.py."""

from __future__ import annotations

import pytest

from pytest_cbchaos.breaker.conformance.admission import admission_violations, probe_breaker
from pytest_cbchaos.testing.breaker_mutants import BlindClaimStore, SecondHalfOpenCallerBreaker
from pytest_cbchaos.testing.store_paths import StorePath


def _sync_only(store_path: StorePath) -> None:
    if store_path.name.endswith("async"):
        pytest.skip("an async store takes AsyncCircuitBreaker (tasks, not threads); both breakers turn "
                    "replies into permits in the one shared core, checked here on the sync paths")


def test_busy_probe_admits_exactly_one_caller(store_path: StorePath) -> None:
    _sync_only(store_path)
    assert admission_violations(store_path.target.make(), probe_breaker) == []


def test_breaker_admitting_a_second_half_open_caller_is_caught(store_path: StorePath) -> None:
    _sync_only(store_path)
    v = admission_violations(store_path.target.make(),
                             lambda st: probe_breaker(st, cls=SecondHalfOpenCallerBreaker))
    assert any("OPEN-elapsed: 8 of 8" in x for x in v) and any("busy probe: 8 of 8" in x for x in v), v


def test_store_claiming_blindly_is_caught_at_the_breaker() -> None:
    """The gates are held in the window until all have read (pause_hook), so every one claims."""
    v = admission_violations(BlindClaimStore(), probe_breaker)
    assert any("OPEN-elapsed: 8 of 8" in x for x in v), v
