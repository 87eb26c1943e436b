"""8, 16 and 32 worker processes (forked from a preloaded fork server) share one real Redis through the proxy: exactly one probe
(docs/breaker-design.md#multi-process-gate, CB-3: one gate each, released by a barrier); a SIGKILLed owner wedges <=
lease (CB-24); breakers in processes admit one caller in HALF_OPEN (docs/breaker-design.md#half-open-admission)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import pytest

from pytest_cbchaos.breaker import RedisStore
from pytest_cbchaos.breaker.conformance import workers
from pytest_cbchaos.mpcontext import forkserver_context

pytestmark = pytest.mark.requires_real_redis
PRELOAD = ["redis", "pytest_cbchaos.breaker.conformance.workers"]


def _conn(proxy: Any, proc: Any, **kw: Any) -> dict[str, Any]:
    return {"host": proxy.listen_host, "port": proxy.listen_port, "password": proc.password,
            "key_prefix": f"mp{uuid.uuid4().hex[:6]}", **kw}


def _reap(ps: list[Any]) -> None:
    for p in ps:
        if p.is_alive():
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # exited between the check and the kill
        p.join(timeout=10)


def _together(target: Any, conn: dict[str, Any], n: int) -> list[Any]:
    """``n`` ``target(conn, "b", barrier, out)`` worker processes; what each put on ``out``."""
    ctx = forkserver_context(PRELOAD)
    barrier, out = ctx.Barrier(n), ctx.Queue()
    ps = [ctx.Process(target=target, args=(conn, "b", barrier, out)) for _ in range(n)]
    try:
        for p in ps:
            p.start()
        return [out.get(timeout=60) for _ in range(n)]
    finally:
        _reap(ps)


@pytest.mark.parametrize("n", [8, 16, pytest.param(32, marks=pytest.mark.slow)])  # 32: the slowest
def test_half_open_admits_exactly_one_probe(n: int, cbchaos_redis_proxy: Any, cbchaos_redis_proc: Any,
                                            cbchaos_redis: Any) -> None:
    conn = _conn(cbchaos_redis_proxy, cbchaos_redis_proc)
    RedisStore(cbchaos_redis, key_prefix=conn["key_prefix"]).force_open("b", 0)  # OPEN, cooldown elapsed
    results = _together(workers.gate_once, conn, n)
    won = [r for r in results if r[0]]
    assert len(won) == 1 and won[0][1] == "open->half_open", results
    assert sum(1 for r in results if r[1] == "open->half_open") == 1


def test_busy_probe_admits_exactly_one_breaker_process(cbchaos_redis_proxy: Any, cbchaos_redis_proc: Any,
                                                       cbchaos_redis: Any) -> None:
    """docs/breaker-design.md#half-open-admission: each process a breaker; round 1 from OPEN-elapsed
    admits one, round 2 (the winner still holds its probe) admits none."""
    n = 4
    conn = _conn(cbchaos_redis_proxy, cbchaos_redis_proc)
    RedisStore(cbchaos_redis, key_prefix=conn["key_prefix"]).force_open("b", 0)  # OPEN, cooldown elapsed
    results = _together(workers.acquire_twice, conn, n)
    first, second = [r[0] for r in results], [r[1] for r in results]
    assert first.count("admitted") == 1 and first.count("half_open") == n - 1, results
    assert second == ["half_open"] * n, results


def test_sigkilled_probe_owner_blocks_at_most_the_lease(cbchaos_redis_proxy: Any, cbchaos_redis_proc: Any,
                                                        cbchaos_redis: Any) -> None:
    lease = 1.0
    ctx = forkserver_context(PRELOAD)
    conn = _conn(cbchaos_redis_proxy, cbchaos_redis_proc, lease=lease)
    st = RedisStore(cbchaos_redis, key_prefix=conn["key_prefix"], probe_lease_seconds=lease)
    st.force_open("b", 0)
    out = ctx.Queue()
    p = ctx.Process(target=workers.claim_and_hang, args=(conn, "b", out))
    p.start()
    try:
        won, token = out.get(timeout=60)
        assert won and token
        os.kill(p.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        p.join(timeout=10)
    finally:
        _reap([p])
    gate_interval, wedge = 0.05, None
    deadline = killed_at + lease + 5
    while time.monotonic() < deadline:
        r = st.try_transition_and_claim_probe("b", None, 60)
        if r.won:
            wedge = time.monotonic() - killed_at
            assert r.label == "half_open_probe_reclaimed"
            break
        assert r.record["_reason"] == "probe_busy"
        time.sleep(gate_interval)
    assert wedge is not None and wedge <= lease + gate_interval + 0.5, wedge
    # the dead owner's token is fenced off (CB-17)
    assert st.release_probe("b", token, "success", recovery_timeout=60)["_reason"] == "stale_token"
