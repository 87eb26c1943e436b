"""CB-27: with AsyncCircuitBreaker on AsyncRedisStore a 10 ms ticker keeps running while Redis answers
after 500 ms (latency toxic on the proxy); asyncio debug mode reports no slow callback. The bound is
generous (a loaded 2-core machine; CB-27's 25 ms is checked in test_async.py): the point is to
catch a blocking call, and the blocking mutant (sync Redis I/O inside the coroutines) must fail it."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from typing import Any, Callable

import pytest
import redis

from pytest_cbchaos.breaker import AsyncCircuitBreaker, AsyncRedisStore, BreakerConfig, RedisStore
from pytest_cbchaos.servers.redis import no_retry
from pytest_cbchaos.testing.breaker_mutants import BlockingAsyncStore

pytestmark = pytest.mark.requires_real_redis
P99_BOUND, SLOW_CALLBACK, MIN_TICKS, CALLS = 0.2, 0.3, 20, 3


class _SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "took" in msg and "seconds" in msg:
            self.messages.append(msg)


def measure_loop_lag(workload: Callable[[], Any], what: str) -> list[str]:
    """Run ``await workload()`` (it returns a list of violations) in a debug-mode loop beside a 10 ms
    ticker; add the loop-lag violations: too few ticks, p99 lag above the bound, slow callbacks."""
    slow = _SlowCallbacks()
    alog = logging.getLogger("asyncio")
    alog.addHandler(slow)
    v: list[str] = []

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = SLOW_CALLBACK
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            for _ in range(10_000):  # bounded; stopped by the event long before
                if stop.is_set():
                    return
                t = loop.time()
                await asyncio.sleep(0.01)
                lags.append(loop.time() - t - 0.01)
        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        try:
            v.extend(await workload())
        finally:
            stop.set()
            await tick
        return lags
    try:
        lags = sorted(asyncio.run(main(), debug=True))
    finally:
        alog.removeHandler(slow)
    if len(lags) < MIN_TICKS:
        v.append(f"the ticker ran {len(lags)} times during {what} (loop starved)")
    p99 = lags[max(0, math.ceil(len(lags) * 0.99) - 1)] if lags else float("inf")
    if p99 > P99_BOUND:
        v.append(f"p99 loop lag {p99 * 1000:.0f} ms > {P99_BOUND * 1000:.0f} ms")
    if slow.messages:
        v.append(f"asyncio debug: slow callbacks {slow.messages[:3]}")
    return v


async def ok() -> int:
    return 1


def loop_lag_violations(make_store: Callable[[], Any], latency: Any) -> list[str]:
    """Run CALLS concurrent breaker calls (gate + success each) under ``latency``; measure the ticker."""
    async def workload() -> list[str]:
        cb = AsyncCircuitBreaker("b", BreakerConfig(failure_threshold=100), store=make_store())
        await cb.get_state()  # connect before the fault
        with latency():
            results = await asyncio.wait_for(asyncio.gather(*(cb.call(ok) for _ in range(CALLS))), 60)
        return [] if results == [1] * CALLS else [f"calls under latency returned {results}"]
    return measure_loop_lag(workload, ">= 1 s of Redis latency")


def test_cb27_loop_not_blocked_generous_bound(cbchaos_redis_async: Any, cbchaos_redis_proxy: Any,
                                              cbchaos_faults: Any) -> None:
    make = lambda: AsyncRedisStore(cbchaos_redis_async, key_prefix=f"ll{uuid.uuid4().hex[:6]}")  # noqa: E731
    v = loop_lag_violations(make, lambda: cbchaos_faults.latency(cbchaos_redis_proxy, ms=500))
    assert v == []


def test_cb27_blocking_store_mutant_is_caught(cbchaos_redis_proxy: Any, cbchaos_redis_proc: Any,
                                              cbchaos_faults: Any) -> None:
    client = redis.Redis(host=cbchaos_redis_proxy.listen_host, port=cbchaos_redis_proxy.listen_port,
                         password=cbchaos_redis_proc.password, socket_timeout=5, retry=no_retry())
    try:
        make = lambda: BlockingAsyncStore(RedisStore(client, key_prefix=f"ll{uuid.uuid4().hex[:6]}"))  # noqa: E731
        v = loop_lag_violations(make, lambda: cbchaos_faults.latency(cbchaos_redis_proxy, ms=500))
    finally:
        client.close()
    assert any("p99" in x for x in v) and any("slow callbacks" in x for x in v), v
