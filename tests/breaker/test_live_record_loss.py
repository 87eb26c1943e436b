"""Key eviction (docs/breaker-design.md#record-loss) and loss on a live redis-server: DEL, FLUSHALL, restart and
allkeys-lru eviction, during OPEN and during a probe. Asserted: no exception, CLOSED defaults (X3), stale tokens
rejected even after the record is re-claimed (generations restart), ``record_missing`` events. Each scenario returns its
violations and is also run against the mutants that must fail it."""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest

from live_servers import extra_redis, wait_until
from pytest_cbchaos.breaker import BreakerConfig, CircuitBreaker, RedisStore
from pytest_cbchaos.servers.redis import RedisServer
from pytest_cbchaos.testing.breaker_mutants import GenerationOnlyTokenRedisStore, NoLossEventsBreaker

pytestmark = pytest.mark.requires_real_redis
LOSSES = ("del", "flushall", "restart", "evict")


@pytest.fixture(scope="module")
def server(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with extra_redis(pytestconfig, tmp_path_factory.mktemp("loss")) as srv:
        yield srv


class Events:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def on_store_event(self, ev: Any) -> None:
        self.kinds.append(ev.kind)


def lose(server: RedisServer, key: str, how: str) -> None:
    """Make ``key`` disappear the way ``how`` says (bounded in count and time)."""
    with server.client() as admin:
        if how == "del":
            admin.delete(key)
        elif how == "flushall":
            admin.flushall()
        elif how == "evict":
            admin.config_set("maxmemory-policy", "allkeys-lru")
            admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) + 1_000_000)
            try:
                blob = b"x" * 4096
                for batch in range(200):  # at most 200 x 100 x 4 KB written
                    pipe = admin.pipeline(transaction=False)
                    for i in range(100):
                        pipe.set(f"filler:{batch}:{i}", blob)
                    pipe.execute()
                    if not admin.exists(key):
                        break
                assert not admin.exists(key), "allkeys-lru never evicted the breaker key"
                assert int(admin.info("stats")["evicted_keys"]) > 0
            finally:
                admin.config_set("maxmemory", 0)
                admin.flushall()  # drop the filler (the breaker key is already gone)
    if how == "restart":
        server.restart()  # no persistence: the data set is gone, and the script cache with it
    with server.client() as admin:
        assert not admin.exists(key), f"{how} left {key}"


def loss_violations(server: RedisServer, how: str, phase: str, store_cls: type = RedisStore,
                    breaker_cls: type = CircuitBreaker) -> list[str]:
    v: list[str] = []
    prefix = f"ls{uuid.uuid4().hex[:8]}"
    client, client2 = server.client(), server.client()
    try:
        store = store_cls(client, key_prefix=prefix)
        ev = Events()
        a = breaker_cls("b", BreakerConfig(failure_threshold=1, cooldown_s=60, probe_heartbeat=False),
                        store=store, listeners=[ev])
        if phase == "open":
            a.acquire().failure("http_503")
            assert store.get_state("b")["state"] == "open"
            lose(server, store.key("b"), how)
            permit = a.acquire()  # no exception: the lost record reads as CLOSED defaults
            if not permit.admitted or permit.probe_token or permit.state != "closed":
                v.append(f"gate after loss: {permit}")
            permit.success()
        else:
            store.force_open("b", 0)
            permit = a.acquire()
            assert permit.probe_token, "setup: the probe was not claimed"
            lose(server, store.key("b"), how)
            st = store.get_state("b")
            if st["state"] != "closed" or st["probe_token"]:
                v.append(f"after loss the record is not CLOSED defaults: {st}")
            if store.renew_probe("b", permit.probe_token):
                v.append("the stale token renewed a lost claim")
            # a second worker trips and claims again: generations restart, the old token must stay dead
            other = RedisStore(client2, key_prefix=prefix)
            other.force_open("b", 0)
            claim = other.try_transition_and_claim_probe("b")
            assert claim.won, f"setup: the second worker could not claim: {claim}"
            permit.success()  # the stale owner's success: swallowed, must resolve nothing
            st = store.get_state("b")
            if st["state"] != "half_open" or st["probe_token"] != claim.token:
                v.append(f"the stale owner resolved the new probe: {st['state']} token={st['probe_token']!r}")
        st = store.get_state("b")
        defaults = {"failure_count": 0, "last_failure_time": 0.0}
        if phase == "open" and ({k: st[k] for k in defaults} != defaults or st["state"] != "closed"):
            v.append(f"not CLOSED defaults after loss: {st}")
        if "record_missing" not in ev.kinds:
            v.append(f"no record_missing event (store events: {ev.kinds})")
    finally:
        client.close()
        client2.close()
    return v


@pytest.mark.parametrize("phase", ["open", "probe"])
@pytest.mark.parametrize("how", LOSSES)
def test_record_loss_fails_open_and_fences_stale_tokens(server: RedisServer, how: str, phase: str) -> None:
    assert loss_violations(server, how, phase) == []


def test_generation_only_fencing_mutant_is_caught(server: RedisServer) -> None:
    v = loss_violations(server, "del", "probe", store_cls=GenerationOnlyTokenRedisStore)
    assert any("stale owner resolved" in x for x in v), v


@pytest.mark.parametrize("phase", ["open", "probe"])
def test_no_loss_events_mutant_is_caught(server: RedisServer, phase: str) -> None:
    v = loss_violations(server, "flushall", phase, breaker_cls=NoLossEventsBreaker)
    assert any("record_missing" in x for x in v), v


def test_restart_reloads_scripts_without_fallback(server: RedisServer) -> None:
    with server.client() as c:
        store = RedisStore(c, key_prefix=f"ls{uuid.uuid4().hex[:8]}")
        store.atomic_record_failure("b", 5, 60)
        loads = store.stats["script_load"]
        server.restart()
        wait_until(server.ping, 10, "redis-server back after restart")
        assert store.atomic_record_failure("b", 5, 60)["failure_count"] == 1  # record lost, op applied once
        assert store.stats["script_load"] == loads + 1 and not store.using_fallback
