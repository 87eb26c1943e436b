"""``cbchaos_redis_async`` under both asyncio runner plugins: pytest-asyncio and anyio (README, "Async tests");
``cbchaos_stream_store`` closes the clients it made."""

from __future__ import annotations

from typing import Any, Iterator

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


def _open_links(client: Any) -> int:
    pool = client.connection_pool
    return sum(c.is_connected for c in [*pool._available_connections, *pool._in_use_connections])


@pytest.fixture
def closed_after_teardown() -> Iterator[list[Any]]:
    """Requested before ``cbchaos_stream_store``, so torn down after it: each client put here must be closed
    by then (a client the fixture left open is dropped unclosed later, under another test)."""
    made: list[Any] = []
    yield made
    assert made, "the test registered no client"
    left = [_open_links(c) for c in made]
    assert left == [0] * len(made), f"links still open after cbchaos_stream_store's teardown: {left}"


@pytest.mark.asyncio
async def test_stream_store_clients_are_closed_at_teardown(closed_after_teardown: list[Any],
                                                           cbchaos_stream_store: Any) -> None:
    store = cbchaos_stream_store()
    assert await store.redis.ping()
    closed_after_teardown.append(store.redis)
    assert _open_links(store.redis) == 1  # the teardown check would pass vacuously on a client never connected
