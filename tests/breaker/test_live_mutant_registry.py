"""Every live-server mutant in REDIS_MUTANTS is exercised by a test_live_* module that asserts it is caught."""

from __future__ import annotations

from pathlib import Path

from pytest_cbchaos.testing.breaker_mutants import REDIS_MUTANTS


def test_every_redis_mutant_is_used_by_a_live_test() -> None:
    text = "".join(p.read_text() for p in Path(__file__).parent.glob("test_live_*.py") if p.name != Path(__file__).name)
    unused = [name for name, (cls, _) in REDIS_MUTANTS.items() if cls.__name__ not in text]
    assert not unused, f"REDIS_MUTANTS without a live test: {unused}"
