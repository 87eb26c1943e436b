"""StoreModelMachine against InMemoryStore, RedisStore (real Redis through the proxy) and a mutant."""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from pytest_cbchaos.breaker.store import InMemoryStore
from pytest_cbchaos.stateful import store_machine
from pytest_cbchaos.testing.breaker_mutants import GuardlessSuccessStore

SETTINGS = settings(max_examples=25, stateful_step_count=30, deadline=None)


def test_inmemory_store_matches_model() -> None:
    run_state_machine_as_test(store_machine(lambda: InMemoryStore()), settings=SETTINGS)


def test_machine_catches_guardless_success_mutant() -> None:
    with pytest.raises(AssertionError):
        run_state_machine_as_test(store_machine(lambda: GuardlessSuccessStore()),
                                  settings=settings(SETTINGS, max_examples=100,
                                                    report_multiple_bugs=False,
                                                    phases=[Phase.generate, Phase.shrink]))


def test_redis_store_matches_model(cbchaos_redis) -> None:
    from pytest_cbchaos.breaker.redis_store import RedisStore
    machine = store_machine(lambda: RedisStore(cbchaos_redis, key_prefix="cbchaos-sm"),
                            time_source="server")
    run_state_machine_as_test(machine, settings=settings(SETTINGS, max_examples=10,
                                                         stateful_step_count=25))
