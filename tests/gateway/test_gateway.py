"""Gateway: provider calls through the circuit breaker (state in real Redis), events in the durable
stream; provider 5xx opens the breaker and the gateway answers with a recorded "circuit open" terminal."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from pytest_cbchaos.breaker import AsyncCircuitBreaker, AsyncRedisStore, BreakerConfig
from pytest_cbchaos.gateway import Gateway, ProviderSource
from pytest_cbchaos.servers.mockllm import MockLLM, http_error, text
from pytest_cbchaos.stream import LogReader, StreamConfig, StreamStore, TurnRelay, check_stream, fold


@pytest.fixture
def mock_llm():
    mock = MockLLM(require_key=True).start()
    yield mock
    mock.stop()


def test_provider_5xx_opens_breaker_and_gateway_records_circuit_open(cbchaos_redis_proc, mock_llm):
    async def main():
        client = aioredis.Redis(host=cbchaos_redis_proc.host, port=cbchaos_redis_proc.port,
                                password=cbchaos_redis_proc.password, socket_timeout=2.0)
        cfg = StreamConfig.ci()
        store = StreamStore(client, cfg)
        relay = TurnRelay(store, cfg)
        breaker = AsyncCircuitBreaker("provider", BreakerConfig(failure_threshold=2, cooldown_s=30),
                                      store=AsyncRedisStore(client))
        gw = Gateway(relay, lambda c, m, model, prompt: ProviderSource(mock_llm.base_url, mock_llm.api_key, model, prompt),
                     provider_breaker=breaker)
        mock_llm.set_default([text("hello durable world", chunks=3)])
        h = await gw.submit("g1", "hi", model_id="mock-model", message_id="ok1")
        assert (await h.wait()).status == "completed"
        view = fold(await LogReader(store).collect("g1", message_id="ok1", after_seq=h.after_seq))
        assert view.text == "hello durable world" and view.status == "completed"

        mock_llm.script(lambda body: True, [http_error(500, body="upstream exploded")], times=2)
        for i in range(2):
            h = await gw.submit("g1", "hi", model_id="mock-model", message_id=f"bad{i}")
            out = await h.wait()
            rec = await store.record("g1", f"bad{i}")
            assert out.status == "failed" and rec["error_code"] == "bootstrap.transport"
            assert "500" in rec["error_message"]
        n_requests = len(mock_llm.requests)
        t0 = time.monotonic()
        h = await gw.submit("g1", "hi", model_id="mock-model", message_id="refused")
        out = await asyncio.wait_for(h.wait(), 5)  # never hangs
        assert time.monotonic() - t0 < 5
        envs = await LogReader(store).collect("g1", message_id="refused", after_seq=h.after_seq)
        err = envs[-1]
        assert err.kind == "error" and err.payload["cause"] == "circuit_open"
        assert "circuit open" in err.payload["message"] and err.payload["stage"] == "transport"
        assert len(mock_llm.requests) == n_requests  # the provider was not called
        # the breaker state lives in Redis: a second breaker instance (another process) sees it open
        other = AsyncCircuitBreaker("provider", BreakerConfig(failure_threshold=2, cooldown_s=30),
                                    store=AsyncRedisStore(client))
        assert (await other.get_state()).value in ("open", "OPEN")
        rep = check_stream(await store.read_all("g1"), records=await store.records("g1"), emissions=relay.emissions)
        assert rep.ok, rep
        await client.aclose()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_gateway_fixture_mid_stream_provider_failure_and_live_consumer(cbchaos_gateway):
    from pytest_cbchaos.servers.mockllm import disconnect

    async def main():
        async with cbchaos_gateway.open() as gw:
            cbchaos_gateway.mock.set_default([text("partial answer here", chunks=4, delay=0.02), disconnect(after_chunks=0)])
            h = await gw.gateway.submit("g2", "hi", model_id="mock-model", message_id="m1")
            live = asyncio.create_task(gw.reader.collect("g2", message_id="m1", after_seq=h.after_seq))
            out = await asyncio.wait_for(h.wait(), 20)
            envs = await asyncio.wait_for(live, 5)
            view = fold(envs)
            assert out.status in ("failed", "completed")
            if out.status == "failed":  # mid-stream failure: one error terminal, partial content kept
                assert view.error["stage"] == "stream" and envs[-1].kind == "error"
            replay = fold(await gw.reader.collect("g2", message_id="m1", after_seq=0))
            assert replay == view  # live view equals replay view (INV-19)
            rep = check_stream(await gw.store.read_all("g2"), records=await gw.store.records("g2"))
            assert rep.ok, rep

    asyncio.run(asyncio.wait_for(main(), 60))
