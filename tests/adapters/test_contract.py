"""Each adapter's contract against real Redis through the fault proxy."""

from __future__ import annotations

import pytest

from pytest_cbchaos.adapters import (AdapterConfig, BreakerRejected, Unsupported, available_adapters,
                                     normalise_state, unavailable_adapters)


class Boom(Exception):
    pass


def _fail() -> None:
    raise Boom("x")


def test_normalise_state_spellings() -> None:
    assert [normalise_state(s) for s in ("closed", "OPEN", "half-open", "HALF_OPEN", "opened", "half-opened",
                                         None, "weird")] == ["closed", "open", "half_open", "half_open", "open",
                                                             "half_open", "unknown", "unknown"]


def test_registry_skips_purgatory_with_reason() -> None:
    names = [c.name for c in available_adapters()]
    assert "pybreaker" in names and "cbchaos" in names
    import redis

    if int(redis.__version__.split(".")[0]) >= 6:
        assert "redis<6" in unavailable_adapters()["purgatory"]


@pytest.mark.parametrize("bad", [dict(failure_threshold=0), dict(cooldown_s=0), dict(half_open_permits=0),
                                 dict(success_threshold=0)])
def test_config_rejects_bad_values(bad: dict) -> None:
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        AdapterConfig(**bad)


def test_contract(cbchaos_breaker_adapter, cbchaos_redis_admin) -> None:
    a = cbchaos_breaker_adapter
    b = a.factory(AdapterConfig(failure_threshold=2, cooldown_s=30))
    assert b.describe()["library_version"]
    assert b.state() == "closed"
    assert b.call(lambda: 42) == 42
    with pytest.raises(Boom):
        b.call(_fail)
    assert b.counters()["failures"] == 1
    with pytest.raises(Boom):
        b.call(_fail)
    assert b.state() == "open"
    with pytest.raises(BreakerRejected):
        b.call(lambda: 1)
    keys = b.keys()
    if b.shared_state:
        assert keys and any(cbchaos_redis_admin.exists(k) for k in keys)
        other = a.factory(AdapterConfig(failure_threshold=2, cooldown_s=30))
        assert other.state() == "open"  # a second worker sees the shared OPEN
    else:
        assert keys == []
    try:
        b.force("closed")
    except Unsupported:
        return
    assert b.state() == "closed"
    assert b.call(lambda: 7) == 7


def test_record_success_failure(cbchaos_breaker_adapter) -> None:
    b = cbchaos_breaker_adapter.factory(AdapterConfig(failure_threshold=3, cooldown_s=30))
    b.record_failure()
    b.record_failure()
    assert b.counters()["failures"] == 2
    b.record_success()
    assert b.counters()["failures"] == 0
    for _ in range(3):
        b.record_failure()
    assert b.state() == "open"
