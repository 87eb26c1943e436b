"""CB-26 server time on every store path (pytest_cbchaos/testing/store_paths.py), and the mutants the
cell walk (tests/stateful/test_store_machine.py) and the server-time check must catch
(docs/breaker-design.md#transition-cells, docs/breaker-design.md#clock-skew)."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from pytest_cbchaos.breaker.conformance import InvariantViolation, StoreTarget, check, redis_target
from pytest_cbchaos.breaker.conformance.server_time import WORKER_SKEWS, server_time_violations
from pytest_cbchaos.faults.clock import SkewedClock
from pytest_cbchaos.stateful.store_cells import walk_cells
from pytest_cbchaos.testing.breaker_mutants import (KeepCountReleaseLuaStore, KeepCountReleaseStore,
                                                    UnwatchedFallbackRedisStore,
                                                    WorkerClockFallbackAsyncRedisStore,
                                                    WorkerClockFallbackRedisStore)
from pytest_cbchaos.testing.store_paths import StorePath, SyncFacade, _Loop

_SKEW_IDS = [f"worker{s:+g}s" for s in WORKER_SKEWS]


@pytest.mark.parametrize("path", ["kernel", "lua"])
def test_keep_count_release_mutant_is_caught_by_the_walk(path: str, fake_client: Any) -> None:
    if path == "kernel":
        def make() -> Any:
            return KeepCountReleaseStore()
    else:
        def make() -> Any:
            return KeepCountReleaseLuaStore(fake_client, time_source="client", allow_unbounded_io=True)
    with pytest.raises(AssertionError, match="failure_count"):
        walk_cells(make)


@pytest.mark.parametrize("skew", WORKER_SKEWS, ids=_SKEW_IDS)
def test_server_time_on_every_path(store_path: StorePath, skew: float) -> None:
    if store_path.server_now is None:
        pytest.skip(f"{store_path.name}: no server clock (the store's clock is the worker's; CB-1 covers it)")
    st = store_path.target.make(time_source="server", clock=SkewedClock(skew))
    assert server_time_violations(st, store_path.server_now) == []


def _server_now(c: Any) -> Any:
    def now() -> float:
        s, us = c.time()
        return s + us / 1e6
    return now


@pytest.mark.parametrize("skew", WORKER_SKEWS, ids=_SKEW_IDS)
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_worker_clock_fallback_mutant_is_caught(flavour: str, skew: float) -> None:
    server = fakeredis.FakeServer()
    c = fakeredis.FakeRedis(server=server)
    kw: dict[str, Any] = dict(scripting="disabled", allow_unbounded_io=True, clock=SkewedClock(skew))
    loop = _Loop() if flavour == "async" else None
    try:
        if loop is None:
            st: Any = WorkerClockFallbackRedisStore(c, **kw)
        else:
            st = SyncFacade(WorkerClockFallbackAsyncRedisStore(fakeredis.FakeAsyncRedis(server=server), **kw),
                            loop.loop)
        v = server_time_violations(st, _server_now(c))
    finally:
        if loop is not None:
            loop.close()
        c.close()
    assert any("_now" in x for x in v) and any("open_until" in x for x in v), v



@pytest.mark.parametrize("scripting,calls", [("auto", 0), ("disabled", 1)], ids=["lua", "fallback"])
def test_fallback_calls_pause_hook_in_its_window(fake_client: Any, scripting: str, calls: int) -> None:
    st = redis_target(fake_client, scripting=scripting).make()
    seen: list[dict] = []
    st.pause_hook = lambda: seen.append(dict(fake_client.hgetall(st.key("b"))))
    st.atomic_record_failure("b", 5, 60, now=1_800_000_000.0)
    assert len(seen) == calls and all(s == {} for s in seen)  # called after the read, before the write


@pytest.mark.parametrize("cb", [4, 16, 25])
def test_unwatched_fallback_mutant_is_caught(fake_client: Any, cb: int) -> None:
    base = redis_target(fake_client, scripting="disabled")

    def make(**kw: Any) -> Any:
        kw.setdefault("key_prefix", "cbconf")
        return UnwatchedFallbackRedisStore(fake_client, **{"time_source": "client", "allow_unbounded_io": True,
                                                           "scripting": "disabled", **kw})
    with pytest.raises(InvariantViolation, match=f"CB-{cb}"):
        check(StoreTarget("unwatched-fallback", make, raw_set=base.raw_set, ttl_of=base.ttl_of), cb)
    check(base, cb)  # the real fallback, same check, same server: holds
