"""docs/breaker-design.md#indeterminate-outcomes: Redis SIGSTOPped for longer than the socket timeout inside each op,
healed afterwards.

Every op (gate, record_success, record_failure, renew, release, force_open, reset) runs once with
redis-server frozen right before it (``before_command``): *transient* (resumed before the store's
resend: the queued request runs first, the resend is answered as a duplicate) and *persistent*
(frozen through every resend: ``StoreIndeterminateError``, then resumed and resent with the same op
id). The checks are those of test_live_op_faults.py (same harness): counted once, one transition
event per applied change, indeterminate only after all resends, never a corrupt record, the history
with ``info`` ops linearizable. Mutants: ``FreshOpIdResendRedisStore``, ``NoResendRedisStore``.

CB-27 under SIGSTOP: while Redis is frozen an AsyncCircuitBreaker's calls fail with a clear store
error after their resends and a 10 ms ticker keeps running; the ``BlockingAsyncStore`` mutant
(sync I/O in coroutines) must fail the same check.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Callable

import pytest
import redis
import redis.asyncio as aredis
from redis.backoff import NoBackoff

from pytest_cbchaos.breaker import (AsyncCircuitBreaker, AsyncRedisStore, BreakerConfig, RedisStore,
                                    StoreUnavailableError)
from pytest_cbchaos.servers.redis import no_retry
from pytest_cbchaos.testing.breaker_mutants import BlockingAsyncStore, FreshOpIdResendRedisStore, NoResendRedisStore
from test_live_loop_lag import measure_loop_lag, ok
from test_live_op_faults import SOCKET_TIMEOUT, Env, env, run_case  # noqa: F401 - env is a fixture

pytestmark = pytest.mark.requires_real_redis

ALL_OPS = ("gate", "record_success", "record_failure", "renew_probe", "release_probe", "force_open", "reset")


def _cases() -> list[Any]:
    out = []
    for op in ALL_OPS:
        for shape in ("transient", "persistent"):
            out.append(pytest.param("lua", op, shape, id=f"lua-{op}-{shape}"))
        out.append(pytest.param("async", op, "transient", id=f"async-{op}-transient"))
        out.append(pytest.param("fallback", op, "transient", id=f"fallback-{op}-transient"))
    # the async path through every resend too
    out.append(pytest.param("async", "force_open", "persistent", id="async-force_open-persistent"))
    out.append(pytest.param("async", "release_probe", "persistent", id="async-release_probe-persistent"))
    return out


@pytest.mark.parametrize("mode,op,shape", _cases())
def test_sigstop_inside_op(env: Env, mode: str, op: str, shape: str) -> None:
    res = asyncio.run(run_case(env, mode, op, "sigstop", shape))
    assert res.violations == [], res.violations


def test_sigstop_mutants_are_caught(env: Env) -> None:
    fresh = asyncio.run(run_case(env, "lua", "record_failure", "sigstop", "transient",
                                 store_cls=FreshOpIdResendRedisStore))
    assert any("not counted once" in x for x in fresh.violations), fresh.violations  # a failure counted twice
    early = asyncio.run(run_case(env, "lua", "reset", "sigstop", "persistent", store_cls=NoResendRedisStore))
    assert any("not after all" in x for x in early.violations), early.violations


# ---- CB-27 under SIGSTOP ----------------------------------------------------------------------------------------

CALLS = 3
ANSWERED_WITHIN_S = 30.0  # bound of a fault-free call's retries (each attempt bounded by SOCKET_TIMEOUT)


async def until_answered(call: Callable[[], Any]) -> Any:
    """A fault-free call through the short-bound client, waited for rather than timed: a reply the box made later
    than ``SOCKET_TIMEOUT`` (``StoreUnavailableError`` after the resends) is asked for again, within a bound."""
    deadline = time.monotonic() + ANSWERED_WITHIN_S
    while True:
        try:
            return await call()
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise


def frozen_loop_lag_violations(make_store: Callable[[], Any], freeze: Callable[[], Any]) -> list[str]:
    """CALLS concurrent breaker calls while Redis is frozen; a 10 ms ticker measures loop lag."""
    async def workload() -> list[str]:
        v: list[str] = []
        store = make_store()
        cb = AsyncCircuitBreaker("b", BreakerConfig(failure_threshold=100), store=store)
        await until_answered(cb.get_state)  # connect before the fault
        with freeze():
            results = await asyncio.wait_for(
                asyncio.gather(*(cb.call(ok) for _ in range(CALLS)), return_exceptions=True), 60)
        bad = [r for r in results if not isinstance(r, StoreUnavailableError)]
        if bad:
            v.append(f"calls during the freeze: want a clear StoreUnavailableError each, got {bad}")
        if await asyncio.wait_for(until_answered(lambda: cb.call(ok)), 60) != 1:
            v.append("the breaker does not work again after the heal")
        close = getattr(getattr(store, "client", None), "aclose", None)
        if close is not None:
            await close()
        return v
    return measure_loop_lag(workload, "the Redis freeze")


def _conn(proxy: Any, proc: Any) -> dict[str, Any]:
    return dict(host=proxy.listen_host, port=proxy.listen_port, password=proc.password,
                socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT)


def test_cb27_loop_not_blocked_while_redis_is_stopped(cbchaos_redis_proxy: Any, cbchaos_redis_proc: Any,
                                                      cbchaos_faults: Any) -> None:
    def make() -> AsyncRedisStore:
        client = aredis.Redis(retry=aredis.retry.Retry(NoBackoff(), 0),
                              **_conn(cbchaos_redis_proxy, cbchaos_redis_proc))
        return AsyncRedisStore(client, key_prefix=f"ss{uuid.uuid4().hex[:6]}", io_resends=1)
    v = frozen_loop_lag_violations(make, lambda: cbchaos_faults.process(cbchaos_redis_proc).pause())
    assert v == []


def test_cb27_blocking_store_mutant_is_caught_under_sigstop(cbchaos_redis_proxy: Any, cbchaos_redis_proc: Any,
                                                            cbchaos_faults: Any) -> None:
    client = redis.Redis(retry=no_retry(), **_conn(cbchaos_redis_proxy, cbchaos_redis_proc))
    try:
        make = lambda: BlockingAsyncStore(RedisStore(client, key_prefix=f"ss{uuid.uuid4().hex[:6]}",  # noqa: E731
                                                     io_resends=1))
        v = frozen_loop_lag_violations(make, lambda: cbchaos_faults.process(cbchaos_redis_proc).pause())
    finally:
        client.close()
    assert any("p99" in x for x in v) and any("slow callbacks" in x for x in v), v
