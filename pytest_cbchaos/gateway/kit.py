"""`GatewayKit`: what the ``cbchaos_gateway`` fixture hands a test. Build the live objects inside the
test's event loop with ``async with kit.open() as gw:`` (``gw.gateway``, ``gw.store``, ``gw.relay``,
``gw.breaker``, ``gw.reader``, ``gw.reaper``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import redis.asyncio as aioredis

from pytest_cbchaos.gateway.core import Gateway, ProviderSource
from pytest_cbchaos.stream import LogReader, Reaper, StreamConfig, StreamStore, TurnRelay


@dataclass
class GatewayLive:
    gateway: Gateway
    store: StreamStore
    relay: TurnRelay
    breaker: Any
    reader: LogReader
    reaper: Reaper


@dataclass
class GatewayKit:
    redis: Any  # RedisServer descriptor (host, port, password)
    mock: Any  # MockLLM (the model provider)
    stream_config: StreamConfig = field(default_factory=StreamConfig.ci)
    breaker_config: Any = None
    model_id: str = "mock-model"

    @contextlib.asynccontextmanager
    async def open(self, *, host: str | None = None, port: int | None = None) -> AsyncIterator[GatewayLive]:
        """``host``/``port`` let a test route Redis through a fault proxy."""
        from pytest_cbchaos.breaker import AsyncCircuitBreaker, AsyncRedisStore, BreakerConfig

        client = aioredis.Redis(host=host or self.redis.host, port=port or self.redis.port,
                                password=self.redis.password, socket_timeout=2.0, socket_connect_timeout=1.0)
        store = StreamStore(client, self.stream_config)
        relay = TurnRelay(store, self.stream_config)
        breaker = AsyncCircuitBreaker("provider", self.breaker_config or BreakerConfig(failure_threshold=3, cooldown_s=30),
                                      store=AsyncRedisStore(client))
        mock = self.mock
        gw = Gateway(relay, lambda c, m, model, prompt: ProviderSource(mock.base_url, mock.api_key, model, prompt),
                     provider_breaker=breaker)
        reaper = Reaper(store)
        reaper.start()
        try:
            yield GatewayLive(gw, store, relay, breaker, LogReader(store), reaper)
        finally:
            await relay.aclose()
            await reaper.stop()
            await client.aclose()
