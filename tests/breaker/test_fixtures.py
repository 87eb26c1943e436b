"""The user-facing fixtures: ``cbchaos_breaker_store`` (memory / redis variants) and ``cbchaos_breaker``."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_cbchaos.breaker import CircuitBreakerOpenError, CircuitState


@pytest.mark.parametrize("cbchaos_breaker_store", ["memory", "redis", "redis-client-time", "redis-fallback"],
                         indirect=True)
def test_breaker_fixture_trips_on_each_store(cbchaos_breaker: Any, cbchaos_breaker_store: Any) -> None:
    class E(Exception):
        status_code = 500

    def fail() -> None:
        raise E()
    for _ in range(3):
        with pytest.raises(E):
            cbchaos_breaker.call(fail)
    assert cbchaos_breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitBreakerOpenError):
        cbchaos_breaker.call(lambda: 1)


def test_default_store_is_memory(cbchaos_breaker_store: Any) -> None:
    assert type(cbchaos_breaker_store).__name__ == "InMemoryStore"
