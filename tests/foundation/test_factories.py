"""The default server fixtures are outputs of the public factories (README "Fixture factories"), and a
factory without ``shared`` owns its instance: started for the fixture, stopped at its end."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from pytest_cbchaos import factories
from pytest_cbchaos.plugin import fixtures, fixtures_opencode

DEFAULTS = {"cbchaos_toxiproxy": (fixtures, factories.toxiproxy), "cbchaos_redis_proc": (fixtures, factories.redis_proc),
            "cbchaos_redis_proxy": (fixtures, factories.proxy), "cbchaos_redis": (fixtures, factories.redis_client),
            "cbchaos_redis_async": (fixtures, factories.redis_async_client),
            "cbchaos_mock_llm_server": (fixtures_opencode, factories.mock_llm),
            "cbchaos_opencode": (fixtures_opencode, factories.opencode)}


@pytest.mark.parametrize("name", DEFAULTS)
def test_default_fixture_is_a_factory_output(name: str) -> None:
    module, factory = DEFAULTS[name]
    made = getattr(module, name).__wrapped__
    assert made.__qualname__.startswith(f"{factory.__name__}.<locals>."), made.__qualname__


own_mock = factories.mock_llm(scope="function", strict=True)


@pytest.fixture
def stopped_after() -> Iterator[list[Any]]:
    """Torn down after the fixtures the test requests after it: checks they were stopped by then."""
    box: list[Any] = []
    yield box
    assert box and not any(m.running for m in box), "an unshared mock outlived its fixture"


def test_an_unshared_mock_is_its_own_and_stopped_with_its_fixture(stopped_after, own_mock,
                                                                  cbchaos_mock_llm_server) -> None:
    assert own_mock is not cbchaos_mock_llm_server and own_mock.strict and own_mock.running
    stopped_after.append(own_mock)
