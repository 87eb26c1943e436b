"""Store paths for the breaker tests: the one matrix of pytest_cbchaos/testing/store_paths.py."""

from __future__ import annotations

from typing import Iterator

import fakeredis
import pytest

from pytest_cbchaos.breaker.conformance import StoreTarget
from pytest_cbchaos.testing.store_paths import StorePath, store_path_fixture


@pytest.fixture
def fake_client() -> Iterator[fakeredis.FakeRedis]:
    server = fakeredis.FakeServer()
    c = fakeredis.FakeRedis(server=server)
    yield c
    c.close()


store_path = store_path_fixture()


@pytest.fixture
def store_target(store_path: StorePath) -> StoreTarget:
    return store_path.target
