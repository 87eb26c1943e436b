"""StoreModelMachine on every store path (the matrix of pytest_cbchaos/testing/store_paths.py) with the
transition cells enforced (docs/breaker-design.md#transition-cells), RedisStore in server time, and a mutant."""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from pytest_cbchaos.breaker.cells import CellCoverage
from pytest_cbchaos.stateful import store_machine
from pytest_cbchaos.stateful.store_cells import walk_cells
from pytest_cbchaos.testing.store_paths import StorePath
from pytest_cbchaos.testing.breaker_mutants import GuardlessSuccessStore

SETTINGS = settings(max_examples=25, stateful_step_count=30, deadline=None)


def test_store_matches_model_and_covers_every_cell(store_path: StorePath) -> None:
    """The deterministic cell walk, then the random machine; the union must reach every cell."""
    make = store_path.target.make
    walked, drawn = CellCoverage("cell walk"), CellCoverage("random machine")
    walk_cells(make, walked)
    # the walk guarantees the cells; the random part explores orders (small budget off the memory path)
    budget = SETTINGS if store_path.name == "memory" else settings(SETTINGS, max_examples=6, stateful_step_count=25)
    run_state_machine_as_test(store_machine(make, coverage=drawn), settings=budget)
    both = CellCoverage(store_path.name)
    both.counts = walked.counts + drawn.counts
    print(f"\n{drawn.table()}\n{both.table()}")
    assert not both.missing(), f"{store_path.name}: cells not reached: {both.missing()}"


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
