"""Breaker-level HALF_OPEN admission (docs/breaker-design.md#half-open-admission) on every store path
(threads) and on real Redis (processes), with the mutants it must catch."""

from __future__ import annotations

import multiprocessing as mp
import uuid
from typing import Any

import pytest

from pytest_cbchaos.breaker import RedisStore
from pytest_cbchaos.breaker.conformance import workers
from pytest_cbchaos.breaker.conformance.admission import admission_violations, probe_breaker
from pytest_cbchaos.testing.breaker_mutants import BlindClaimStore, SecondHalfOpenCallerBreaker
from pytest_cbchaos.testing.store_paths import StorePath


def _sync_only(store_path: StorePath) -> None:
    if store_path.name.endswith("async"):
        pytest.skip("an async store takes AsyncCircuitBreaker (tasks, not threads); both breakers turn "
                    "replies into permits in the one shared core, checked here on the sync paths")


def test_busy_probe_admits_exactly_one_caller(store_path: StorePath) -> None:
    _sync_only(store_path)
    assert admission_violations(store_path.target.make(), probe_breaker) == []


def test_breaker_admitting_a_second_half_open_caller_is_caught(store_path: StorePath) -> None:
    _sync_only(store_path)
    v = admission_violations(store_path.target.make(),
                             lambda st: probe_breaker(st, cls=SecondHalfOpenCallerBreaker))
    assert any("OPEN-elapsed: 8 of 8" in x for x in v) and any("busy probe: 8 of 8" in x for x in v), v


def test_store_claiming_blindly_is_caught_at_the_breaker() -> None:
    """The gates are held in the window until all have read (pause_hook), so every one claims."""
    v = admission_violations(BlindClaimStore(), probe_breaker)
    assert any("OPEN-elapsed: 8 of 8" in x for x in v), v


@pytest.mark.requires_real_redis
def test_busy_probe_admits_exactly_one_process(cbchaos_redis_proxy: Any, cbchaos_redis_proc: Any,
                                               cbchaos_redis: Any) -> None:
    n = 4
    ctx = mp.get_context("spawn")
    conn = {"host": cbchaos_redis_proxy.listen_host, "port": cbchaos_redis_proxy.listen_port,
            "password": cbchaos_redis_proc.password, "key_prefix": f"adm{uuid.uuid4().hex[:6]}"}
    RedisStore(cbchaos_redis, key_prefix=conn["key_prefix"]).force_open("b", 0)  # OPEN, cooldown elapsed
    barrier, out = ctx.Barrier(n), ctx.Queue()
    ps = [ctx.Process(target=workers.acquire_twice, args=(conn, "b", barrier, out)) for _ in range(n)]
    try:
        for p in ps:
            p.start()
        results = [out.get(timeout=60) for _ in range(n)]
    finally:
        for p in ps:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    first = [r[0] for r in results]
    second = [r[1] for r in results]
    assert first.count("admitted") == 1 and first.count("half_open") == n - 1, results
    # the second round: the probe is still held by the first round's winner, so nobody is admitted
    assert second == ["half_open"] * n, results
