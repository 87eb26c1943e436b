"""Stream fixtures (register in plugin.py's ``pytest_plugins``).

* ``cbchaos_stream_config`` -- the spec's CI profile ``StreamConfig``.
* ``cbchaos_stream_store`` -- a factory: ``make(loop_client=None) -> StreamStore`` over a
  ``redis.asyncio`` client to ``cbchaos_redis_proc`` (create it inside your event loop).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import redis.asyncio as aioredis

from pytest_cbchaos.stream import StreamConfig, StreamStore


@pytest.fixture
def cbchaos_stream_config() -> StreamConfig:
    return StreamConfig.ci()


@pytest.fixture
def cbchaos_stream_store(cbchaos_redis_proc: Any, cbchaos_stream_config: StreamConfig) -> Callable[..., StreamStore]:
    def make(host: str | None = None, port: int | None = None) -> StreamStore:
        client = aioredis.Redis(host=host or cbchaos_redis_proc.host, port=port or cbchaos_redis_proc.port,
                                password=cbchaos_redis_proc.password, socket_timeout=2.0, socket_connect_timeout=1.0)
        return StreamStore(client, cbchaos_stream_config)

    return make


@pytest.fixture
def cbchaos_gateway(cbchaos_redis_proc: Any, cbchaos_stream_config: StreamConfig) -> Any:
    """A `GatewayKit`: MockLLM provider + Redis; ``async with cbchaos_gateway.open() as gw: ...``."""
    from pytest_cbchaos.gateway.kit import GatewayKit
    from pytest_cbchaos.servers.mockllm import MockLLM

    mock = MockLLM(require_key=True).start()
    try:
        yield GatewayKit(redis=cbchaos_redis_proc, mock=mock, stream_config=cbchaos_stream_config)
    finally:
        mock.stop()
