"""CB-27: with AsyncCircuitBreaker on AsyncRedisStore a 10 ms ticker keeps running while Redis answers
after 500 ms (latency toxic on the proxy); asyncio debug mode reports no slow callback. The bound is
generous (a loaded 2-core machine; CB-27's 25 ms is checked in test_async.py): the point is to
catch a blocking call, and the blocking mutant (sync Redis I/O inside the coroutines) must fail it."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any, Callable

import pytest
import redis

from pytest_cbchaos.breaker import AsyncCircuitBreaker, AsyncRedisStore, BreakerConfig, RedisStore
from pytest_cbchaos.servers.redis import no_retry
from pytest_cbchaos.testing.breaker_mutants import BlockingAsyncStore
from loop_lag import loop_lags, p99, run, runq_wait_s

pytestmark = pytest.mark.requires_real_redis
P99_BOUND, SLOW_CALLBACK, MIN_TICKS, CALLS, PERIOD = 0.2, 0.3, 20, 3, 0.01
_TOOK = re.compile(r"took (\d+(?:\.\d+)?) seconds")


class _SlowCallbacks(logging.Handler):
    """asyncio debug's slow-callback warnings, each less the run-queue wait since the last tick (an upper
    bound of the wait inside that callback): what is left is the callback's own work or blocking."""

    def __init__(self, marks: list[float]) -> None:
        super().__init__()
        self.marks = marks
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        took = _TOOK.search(record.getMessage())
        if took is None:
            return
        waited = runq_wait_s() - self.marks[-1] if self.marks else 0.0
        if float(took.group(1)) - waited >= SLOW_CALLBACK:
            self.messages.append(f"{record.getMessage()} (run-queue wait {waited:.3f} s deducted)")


def measure_loop_lag(workload: Callable[[], Any], what: str) -> list[str]:
    """Run ``await workload()`` (it returns a list of violations) in a debug-mode loop beside a 10 ms
    ticker; add the loop-lag violations: too few ticks, p99 lag above the bound, slow callbacks. Lags
    and callback times are the loop's own: run-queue wait and late wakes in select are taken out
    (loop_lag.py), so a busy machine is not blamed on the store while a blocking call (asleep in ``recv``
    inside a callback) still is."""
    marks: list[float] = []
    slow = _SlowCallbacks(marks)
    alog = logging.getLogger("asyncio")
    alog.addHandler(slow)
    v: list[str] = []

    async def main() -> tuple[list[float], float, float]:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = SLOW_CALLBACK
        t0 = loop.time()
        found, lags, deducted = await loop_lags(workload, PERIOD, marks)
        v.extend(found)
        return lags, deducted, loop.time() - t0
    try:
        lags, deducted, elapsed = run(main(), debug=True)
    finally:
        alog.removeHandler(slow)
    # a starved loop: fewer ticks than half the time it had the CPU for allows (and MIN_TICKS at most)
    if len(lags) < min(MIN_TICKS, (elapsed - deducted) / PERIOD / 2):
        v.append(f"the ticker ran {len(lags)} times during {what} (loop starved; {elapsed:.2f} s, "
                 f"run-queue wait and late wakes {deducted:.2f} s)")
    if p99(lags) > P99_BOUND:
        v.append(f"p99 loop lag {p99(lags) * 1000:.0f} ms > {P99_BOUND * 1000:.0f} ms "
                 f"(run-queue wait and late wakes {deducted:.3f} s not counted)")
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
