"""``RedisStore`` on a Sentinel-managed primary (docs/redis-topologies.md): decisions continue on the promoted
replica after ``failover()`` (``AsyncRedisStore`` on the asyncio client too), NOSCRIPT there is answered by SCRIPT LOAD, ``wait_replicas`` reports the
acknowledging replicas, a client pinned to the demoted node gets "read-only", and the history is judged
linearizable with no lost acknowledged writes (no false violation)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from breaker_history import BACKEND, Recorded
from pytest_cbchaos.breaker import AsyncRedisStore, RedisStore
from pytest_cbchaos.breaker.errors import StoreUnavailableError
from pytest_cbchaos.breaker.lost_writes import judge, read_survivors
from pytest_cbchaos.breaker.redis_store import _maybe_sent
from pytest_cbchaos.history.recorder import Recorder
from pytest_cbchaos.servers.redis import no_retry

# no fault is active when a write here WAITs for both replicas (before the failover, or after failover() returned with
# the old primary demoted), so each ack is waited for, not timed: WAIT returns as soon as both acked; re-attaching the
# replicas to the new primary (a resync) on a busy box is what a 2 s bound used to race
HEALTHY_WAIT_MS = 5000
HEALTHY_SOCKET_S = HEALTHY_WAIT_MS / 1000 + 5  # the clients outwait that WAIT (their default 2 s would cut it short)


def test_topology_is_replicated_authenticated_and_proxied(cbchaos_redis_sentinel) -> None:
    topo = cbchaos_redis_sentinel
    primary = topo.primary()
    assert [n.role_now() for n in topo.nodes].count("master") == 1 and primary.role_now() == "master"
    with primary.admin() as c:
        info = c.info("replication")
        assert c.config_get("requirepass")["requirepass"] == topo.password
    assert info["connected_slaves"] == len(topo.nodes) - 1
    # announced addresses are the peer proxies, and clients are mapped to the client proxies
    announced = {int(info[f"slave{i}"]["port"]) for i in range(len(topo.nodes) - 1)}
    assert announced == {int(n.peer.listen_port) for n in topo.replicas_of(primary)}
    client = topo.master_client()
    assert client.connection_pool.get_master_address() == (primary.client.listen_host,
                                                            int(primary.client.listen_port))
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=primary.host, port=primary.port, password="wrong", socket_timeout=1, retry=no_retry()).ping()
    with pytest.raises(redis.AuthenticationError):  # the sentinels too
        redis.Redis(host=topo.sentinels[0].host, port=topo.sentinels[0].port, password="wrong", socket_timeout=1,
                    retry=no_retry()).ping()


async def _open_links_after_aclose(topo) -> tuple[int, int]:
    """How many links to the primary and to the sentinels an asyncio master client holds after one command,
    and how many are still open after its ``aclose``."""
    client = topo.async_master_client()
    await client.ping()
    pools = [client.connection_pool, *(s.connection_pool for s in client.connection_pool.sentinel_manager.sentinels)]

    def open_links() -> int:
        return sum(c.is_connected for p in pools for c in [*p._available_connections, *p._in_use_connections])
    before = open_links()
    await client.aclose()
    return before, open_links()


def test_async_master_client_aclose_closes_its_sentinel_links_too(cbchaos_redis_sentinel) -> None:
    """Closing the client closed only the primary's pool: the links to the sentinels it asked stayed open
    and, dropped after their loop had ended, were "unclosed Connection" / "loop is closed" warnings in a
    later test."""
    before, after = asyncio.run(_open_links_after_aclose(cbchaos_redis_sentinel))
    assert before >= 2, f"expected a link to the primary and one to a sentinel, {before} open"
    assert after == 0, f"{after} of {before} links still open after aclose"


def test_decisions_continue_on_the_new_primary_after_failover(cbchaos_redis_sentinel, cbchaos_faults) -> None:
    topo = cbchaos_redis_sentinel
    recorder = Recorder(1)
    store = RedisStore(topo.master_client(socket_timeout=HEALTHY_SOCKET_S), key_prefix=f"fo{uuid.uuid4().hex[:8]}",
                       wait_replicas=2, wait_timeout_ms=HEALTHY_WAIT_MS)
    s = Recorded(store, recorder)
    for _ in range(3):
        reply = s.failure()
    assert reply["state"] == "open" and reply["_replicas_acked"] == 2  # on both replicas before the failover
    old, loads = topo.primary(), store.stats["script_load"]
    pinned = RedisStore(old.via_client_proxy(), key_prefix=store.key_prefix)  # a client that never asks sentinels
    loop = asyncio.new_event_loop()  # one loop for the asyncio client's pooled connections, across the failover
    astore = AsyncRedisStore(topo.async_master_client(socket_timeout=HEALTHY_SOCKET_S), key_prefix=store.key_prefix,
                             wait_replicas=2, wait_timeout_ms=HEALTHY_WAIT_MS)
    assert loop.run_until_complete(astore.get_state(BACKEND))["state"] == "open"
    window = cbchaos_faults.sentinel(topo).failover()
    new = topo.primary()
    assert window.params == {"old_primary": old.name, "new_primary": new.name} and new is not old
    assert s.state()["state"] == "open"  # the OPEN record survived (it was replicated)
    claim = store.try_transition_and_claim_probe(BACKEND)
    assert not claim.admitted and claim.record["_reason"] == "cooldown" and "_wait_error" not in claim.record
    store.force_open("c", 0)
    claim = store.try_transition_and_claim_probe("c")
    assert claim.won, claim
    assert store.release_probe("c", claim.token, "success", recovery_timeout=60)["state"] == "closed"
    assert store.stats["script_load"] > loads  # the promoted replica had no script: NOSCRIPT -> SCRIPT LOAD
    assert store.stats["replica_replies"] == 0 and store.stats["wait_short"] == 0
    try:  # the asyncio store's pooled connection met the demotion: it reaches the new primary
        areply = loop.run_until_complete(astore.atomic_record_failure("a", 1, 60))
        assert areply["state"] == "open" and areply["_replicas_acked"] == 2, areply
    finally:
        loop.run_until_complete(astore.client.aclose())  # not the store's: its aclose closes only a client it made
        loop.close()
    with new.admin() as c:  # the decisions were made on the new primary
        assert c.hget(store.key("c"), "state") == b"closed" and c.hget(store.key("a"), "state") == b"open"
    with pytest.raises(StoreUnavailableError, match="read-only"):  # the demoted node refuses the pinned client
        pinned.atomic_record_failure(BACKEND, 3, 60)
    recorder.close()
    with new.admin() as admin:
        verdict = judge(recorder.history(), read_survivors(admin, store, [BACKEND]))
    assert verdict.verdict == "ok" and verdict.lost.count == 0 and verdict.lost.checked == 3, verdict.describe()


def test_readonly_turned_into_a_connection_error_is_not_a_maybe_sent_write() -> None:
    assert not _maybe_sent(redis.ConnectionError("The previous master is now a slave"))
    assert not _maybe_sent(redis.sentinel.MasterNotFoundError("No master found for 'cbchaos'"))
    assert _maybe_sent(redis.ConnectionError("Connection closed by server."))
