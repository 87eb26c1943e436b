"""Store targets for the breaker tests: memory, fakeredis (Lua / no-Lua), real Redis through the proxy."""

from __future__ import annotations

import uuid
from typing import Iterator

import fakeredis
import pytest

from pytest_cbchaos.breaker.conformance import StoreTarget, memory_target, redis_target


TARGETS = ("memory", "fakeredis-lua", "fakeredis-nolua", "redis-proxy", "redis-proxy-fallback")


@pytest.fixture
def fake_client() -> Iterator[fakeredis.FakeRedis]:
    server = fakeredis.FakeServer()
    c = fakeredis.FakeRedis(server=server)
    yield c
    c.close()


@pytest.fixture(params=TARGETS)
def store_target(request: pytest.FixtureRequest) -> Iterator[StoreTarget]:
    kind = request.param
    if kind == "memory":
        yield memory_target()
    elif kind.startswith("fakeredis"):
        c = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        yield redis_target(c, kind, **({"scripting": "disabled"} if kind.endswith("nolua") else {}))
        c.close()
    else:
        c = request.getfixturevalue("cbchaos_redis")
        prefix = f"t{uuid.uuid4().hex[:6]}"
        extra = {"scripting": "disabled"} if kind.endswith("fallback") else {}
        yield redis_target(c, kind, key_prefix=prefix, allow_unbounded_io=False, **extra)
