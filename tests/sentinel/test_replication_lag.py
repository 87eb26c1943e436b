"""``replication_lag(ms)`` (docs/redis-topologies.md#the-nemesis): during the window a write the primary
acknowledged is not on any replica (``WAIT 1`` with a timeout below the lag counts none, the replicas' reads
miss it) and the breaker's ``WAIT`` durability reports a short count; after the heal the replicas have it.
A lag that applies no toxic fails the "not on a replica" check."""

from __future__ import annotations

import time
import uuid

import pytest

from pytest_cbchaos.breaker import RedisStore
from pytest_cbchaos.faults.controller import FaultController, FaultParameterError

LAG_MS = 250  # below the sentinels' down-after (500 ms): the lag must not also look like a dead primary
PROBE_MS = 100  # the WAIT timeout inside the window: below the lag, so no replica can ack within it
HEALTHY_WAIT_MS = 5000  # outside the window an ack is waited for, not timed: WAIT returns when both have acked
HEALTHY_SOCKET_S = HEALTHY_WAIT_MS / 1000 + 5  # the client outwaits that WAIT (its default 2 s would cut it short)


def has(replica, key: str) -> bool:
    with replica.admin() as c:
        if hasattr(replica, "cluster_id"):
            c.execute_command("READONLY")  # a cluster replica answers reads of its primary's slots
        return c.get(key) is not None


def assert_lagging(primary, replicas: list, key: str) -> None:
    """A write ``primary`` acknowledged is on no replica ``PROBE_MS`` later."""
    with primary.admin() as p:
        p.set(key, 1)
        assert p.execute_command("WAIT", 1, PROBE_MS) == 0, f"a replica acknowledged {key!r} within {PROBE_MS} ms"
    for r in replicas:
        assert not has(r, key), f"{r.name} has {key!r} already"


def wait_replicated(replicas: list, key: str, timeout: float = 5.0) -> float:
    """Seconds until every replica has ``key`` (bounded)."""
    t0 = time.monotonic()
    for r in replicas:
        while not has(r, key):
            assert time.monotonic() - t0 < timeout, f"{r.name} lacks {key!r} after {timeout} s"
            time.sleep(0.01)
    return time.monotonic() - t0


def test_replication_lag_holds_writes_back_from_the_replicas(cbchaos_redis_sentinel, cbchaos_faults) -> None:
    topo = cbchaos_redis_sentinel
    primary = topo.primary()
    replicas = [n for n in topo.nodes if n is not primary]
    healthy = RedisStore(topo.master_client(socket_timeout=HEALTHY_SOCKET_S), key_prefix=f"lag{uuid.uuid4().hex[:8]}",
                         wait_replicas=2, wait_timeout_ms=HEALTHY_WAIT_MS)
    store = RedisStore(topo.master_client(), key_prefix=healthy.key_prefix, wait_replicas=2,
                       wait_timeout_ms=PROBE_MS)
    assert healthy.atomic_record_failure("b", 3, 60)["_replicas_acked"] == 2
    fault = cbchaos_faults.sentinel(topo).replication_lag(LAG_MS)
    key = f"k{uuid.uuid4().hex[:8]}"
    assert_lagging(primary, replicas, key)
    reply = store.atomic_record_failure("b", 3, 60)
    assert reply["_replicas_acked"] == 0 and reply["failure_count"] == 2 and store.stats["wait_short"] == 1
    fault.heal()
    took = wait_replicated(replicas, key)
    assert healthy.atomic_record_failure("b", 3, 60)["_replicas_acked"] == 2 and healthy.stats["wait_short"] == 0
    assert topo.primary() is primary  # a lag below down-after is no failover
    [w] = cbchaos_faults.journal.windows()
    assert (w.kind, w.params["ms"], w.params["primaries"]) == ("replication_lag", LAG_MS, [primary.name])
    print(f"\nreplication_lag: replicas caught up {took * 1000:.0f} ms after the heal")


def test_a_lag_that_applies_no_toxic_is_caught(cbchaos_redis_sentinel, cbchaos_faults, monkeypatch) -> None:
    topo = cbchaos_redis_sentinel
    primary = topo.primary()
    monkeypatch.setattr(primary.peer, "add_toxic", lambda *a, **kw: None)  # the mutant: journaled, not applied
    cbchaos_faults.sentinel(topo).replication_lag(LAG_MS)
    with pytest.raises(AssertionError, match="acknowledged"):
        assert_lagging(primary, [n for n in topo.nodes if n is not primary], f"k{uuid.uuid4().hex[:8]}")


def test_replication_lag_on_a_cluster_shard(cbchaos_redis_cluster, cbchaos_faults) -> None:
    topo = cbchaos_redis_cluster
    key = f"k{uuid.uuid4().hex[:8]}"
    primary = topo.owner(key)
    replica = topo.replica_of(primary)
    rejected = FaultController()  # a journal of its own: the test's would count the failure against the verdict
    with pytest.raises(FaultParameterError, match=r"ms=0, expected an int >= 1"):
        rejected.cluster(topo).replication_lag(0)
    assert [f.kind for f in rejected.journal.failures()] == ["replication_lag"]
    with cbchaos_faults.cluster(topo).replication_lag(LAG_MS, primary=primary.name):
        assert_lagging(primary, [replica], key)
    wait_replicated([replica], key)
    assert [w.kind for w in cbchaos_faults.journal.windows()] == ["replication_lag"]
