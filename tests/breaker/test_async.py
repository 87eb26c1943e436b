"""AsyncRedisStore / AsyncCircuitBreaker through the proxy; CB-27: the loop is never blocked."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from pytest_cbchaos.breaker import (AsyncCircuitBreaker, AsyncInMemoryStore, AsyncRedisStore, BreakerConfig,
                                    CircuitBreaker, CircuitBreakerOpenError, CircuitState, InMemoryStore)

pytestmark = pytest.mark.requires_real_redis


class Boom(Exception):
    status_code = 503


def test_async_store_and_breaker_cycle(cbchaos_redis_async: Any) -> None:
    async def main() -> None:
        st = AsyncRedisStore(cbchaos_redis_async, key_prefix=f"a{uuid.uuid4().hex[:6]}")
        cb = AsyncCircuitBreaker("b", BreakerConfig(max_failures=2, reset_time_seconds=0.2), store=st)

        async def fail() -> None:
            raise Boom()
        for _ in range(2):
            with pytest.raises(Boom):
                await cb.call(fail)
        assert await cb.get_state() is CircuitState.OPEN
        with pytest.raises(CircuitBreakerOpenError):
            await cb.call(fail)
        async def ok() -> str:
            return "ok"
        deadline = asyncio.get_running_loop().time() + 5
        while True:  # wait (bounded) for the 0.2 s cooldown in server time; the first admitted call probes
            try:
                assert await cb.call(ok) == "ok"
                break
            except CircuitBreakerOpenError:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
        assert await cb.get_state() is CircuitState.CLOSED
        with pytest.raises(TypeError):
            cb(lambda: 1)
        with pytest.raises(TypeError):
            AsyncCircuitBreaker("b", store=InMemoryStore())
        with pytest.raises(TypeError):
            CircuitBreaker("b", store=st)
    asyncio.run(main())


def test_cancelled_probe_is_released_shielded() -> None:
    """CB-5 (async): cancellation while holding the claim releases it (shielded, bounded)."""
    async def main() -> None:
        st = AsyncInMemoryStore()
        cb = AsyncCircuitBreaker("b", BreakerConfig(reset_time_seconds=1, probe_abort_policy="free"), store=st)
        await st.force_open("b", 0)
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.Event().wait()
        task = asyncio.create_task(cb.call_with_retry(hang))
        await asyncio.wait_for(started.wait(), 5)
        assert (await st.get_state("b"))["half_open_probe_active"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        s = await st.get_state("b")
        assert s["state"] == "half_open" and not s["half_open_probe_active"]
    asyncio.run(main())


def test_cb27_loop_not_blocked_under_latency(cbchaos_redis_async: Any, cbchaos_redis_proxy: Any,
                                            cbchaos_faults: Any) -> None:
    async def main() -> list[float]:
        st = AsyncRedisStore(cbchaos_redis_async, key_prefix=f"a{uuid.uuid4().hex[:6]}")
        cb = AsyncCircuitBreaker("b", BreakerConfig(max_failures=100), store=st)
        await st.get_state("b")
        lags: list[float] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def ticker() -> None:
            while not stop.is_set():
                t = loop.time()
                await asyncio.sleep(0.01)
                lags.append(loop.time() - t - 0.01)

        async def ok() -> int:
            return 1
        tick = asyncio.create_task(ticker())
        with cbchaos_faults.latency(cbchaos_redis_proxy, ms=500):
            await asyncio.gather(*(cb.call(ok) for _ in range(3)))
        stop.set()
        await tick
        return lags
    lags = sorted(asyncio.run(main()))
    assert len(lags) >= 50
    p99 = lags[int(len(lags) * 0.99) - 1]
    assert p99 <= 0.025, p99
