"""``cbchaos_redis_async`` under both asyncio runner plugins: pytest-asyncio and anyio (README, "Async tests")."""

from __future__ import annotations

from typing import Any

import pytest


async def _round_trip(client: Any) -> None:
    assert await client.ping()
    await client.set("k", "v")
    assert await client.get("k") == b"v"


@pytest.mark.asyncio
async def test_redis_async_under_pytest_asyncio(cbchaos_redis_async: Any) -> None:
    await _round_trip(cbchaos_redis_async)


@pytest.mark.anyio
async def test_redis_async_under_anyio(cbchaos_redis_async: Any, anyio_backend: str) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("redis.asyncio needs asyncio")
    await _round_trip(cbchaos_redis_async)
