"""AsyncRedisStore / AsyncCircuitBreaker through the proxy; CB-27: the loop is never blocked."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Callable

import pytest
import redis
from loop_lag import loop_lags, p99, run

from pytest_cbchaos.breaker import (AsyncCircuitBreaker, AsyncInMemoryStore, AsyncRedisStore, BreakerConfig,
                                    CircuitBreaker, CircuitBreakerOpenError, CircuitState, InMemoryStore,
                                    RedisStore)
from pytest_cbchaos.servers.redis import no_retry
from pytest_cbchaos.testing.breaker_mutants import BlockingAsyncStore

pytestmark = pytest.mark.requires_real_redis


class Boom(Exception):
    status_code = 503


def test_async_store_and_breaker_cycle(cbchaos_redis_async: Any) -> None:
    async def main() -> None:
        st = AsyncRedisStore(cbchaos_redis_async, key_prefix=f"a{uuid.uuid4().hex[:6]}")
        cb = AsyncCircuitBreaker("b", BreakerConfig(failure_threshold=2, cooldown_s=0.2), store=st)

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
        cb = AsyncCircuitBreaker("b", BreakerConfig(cooldown_s=1, probe_abort_policy="free"), store=st)
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


def _cb27_lags(make_store: Callable[[], Any], latency: Callable[[], Any]) -> tuple[list[float], float]:
    """Three breaker calls (gate + success each: two round trips) under ``latency``, beside a 10 ms
    ticker; the ticks' own lags (time outside select after the tick was due less run-queue wait,
    see loop_lag.py) and the wall lag not counted."""
    async def main() -> tuple[list[float], float]:
        cb = AsyncCircuitBreaker("b", BreakerConfig(failure_threshold=100), store=make_store())
        await cb.get_state()  # connect before the fault

        async def ok() -> int:
            return 1

        async def calls() -> list[int]:
            with latency():
                return await asyncio.gather(*(cb.call(ok) for _ in range(3)))
        results, lags, deducted = await loop_lags(calls)
        assert results == [1, 1, 1]
        return lags, deducted
    return run(main())


def test_cb27_loop_not_blocked_under_latency(cbchaos_redis_async: Any, cbchaos_redis_proxy: Any,
                                            cbchaos_faults: Any) -> None:
    """CB-27: p99 of the loop's own lag <= 25 ms while Redis answers after 500 ms."""
    make = lambda: AsyncRedisStore(cbchaos_redis_async, key_prefix=f"a{uuid.uuid4().hex[:6]}")  # noqa: E731
    lags, deducted = _cb27_lags(make, lambda: cbchaos_faults.latency(cbchaos_redis_proxy, ms=500))
    assert lags, "the ticker never ran during >= 1 s of calls"
    assert p99(lags) <= 0.025, (p99(lags), lags[-5:], f"run-queue wait and late wakes in select not counted: {deducted:.3f}s")


def test_cb27_blocking_mutant_is_caught_despite_the_deduction(cbchaos_redis_proxy: Any, cbchaos_redis_proc: Any,
                                                             cbchaos_faults: Any) -> None:
    """Neither deduction hides a blocking call: a sync round trip sleeps in ``recv`` inside a callback
    (outside select, not runnable), so its 500 ms stays in the tick's own lag."""
    client = redis.Redis(host=cbchaos_redis_proxy.listen_host, port=cbchaos_redis_proxy.listen_port,
                         password=cbchaos_redis_proc.password, socket_timeout=5, retry=no_retry())
    try:
        make = lambda: BlockingAsyncStore(RedisStore(client, key_prefix=f"a{uuid.uuid4().hex[:6]}"))  # noqa: E731
        lags, _ = _cb27_lags(make, lambda: cbchaos_faults.latency(cbchaos_redis_proxy, ms=500))
    finally:
        client.close()
    assert lags[-1] >= 0.45, lags[-5:]  # one tick spanned a whole blocked round trip
