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
from loop_lag import loop_lags, p99, run, runq_wait_s, wait_at_last_select_exit

pytestmark = pytest.mark.requires_real_redis
P99_BOUND, SLOW_CALLBACK, MIN_TICKS, CALLS, PERIOD = 0.2, 0.3, 20, 3, 0.01
_TOOK = re.compile(r"took (\d+(?:\.\d+)?) seconds")


class _SlowCallbacks(logging.Handler):
    """asyncio debug's slow-callback warnings, each less the process's run-queue wait since the later of the
    loop's last ``select`` exit, the last tick and the previous slow callback (each callback of the iteration
    ran after all three readings): what is left is the callback's own work or blocking. A callback asleep in a
    blocking ``recv`` is not runnable, so that wait stays counted; the window is one callback's, so the wait of
    earlier blocked callbacks in the same iteration is not taken off a later one."""

    def __init__(self, marks: list[float]) -> None:
        super().__init__()
        self.marks = marks
        self.last: float | None = None  # the run-queue wait when the previous slow callback was reported
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        took = _TOOK.search(record.getMessage())
        if took is None:
            return
        now = runq_wait_s()
        starts = [m for m in (self.marks[-1] if self.marks else None, wait_at_last_select_exit(), self.last)
                  if m is not None]
        waited, self.last = (now - max(starts) if starts else 0.0), now
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


def _slow_reports(monkeypatch: pytest.MonkeyPatch, readings: list[float], handler: Any = None) -> list[str]:
    """Three 0.5 s callbacks reported in one loop iteration after one tick (mark 0.0), the process's run-queue
    wait read as ``readings`` at each report: each callback waited 0.15 s of it, so each is 0.35 s its own."""
    import test_live_loop_lag as mod
    it = iter(readings)
    monkeypatch.setattr(mod, "runq_wait_s", lambda: next(it))
    monkeypatch.setattr(mod, "wait_at_last_select_exit", lambda: 0.0)
    slow = (handler or _SlowCallbacks)([0.0])
    for _ in range(3):
        slow.emit(logging.LogRecord("asyncio", logging.WARNING, __file__, 0,
                                    "Executing <Task> took 0.500 seconds", None, None))
    return slow.messages


def test_each_slow_callback_is_judged_on_its_own_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(_slow_reports(monkeypatch, [0.15, 0.30, 0.45])) == 3


def test_a_window_since_the_last_tick_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutant: every report less the wait since the last tick, which takes the earlier blocked callbacks'
    wait off the later ones (0.5 - 0.30 and 0.5 - 0.45 are below the 0.3 s line)."""
    class SinceTick(_SlowCallbacks):
        def emit(self, record: logging.LogRecord) -> None:
            self.last = None
            with pytest.MonkeyPatch.context() as m:
                import test_live_loop_lag as mod
                m.setattr(mod, "wait_at_last_select_exit", lambda: None)
                super().emit(record)
    assert len(_slow_reports(monkeypatch, [0.15, 0.30, 0.45], SinceTick)) == 1
