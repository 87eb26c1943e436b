"""``RedisStore`` on a Redis Cluster (docs/redis-topologies.md#redis-cluster): after a shard's failover the
decisions continue on the promoted replica (NOSCRIPT there answered by SCRIPT LOAD), the other shards are
untouched, and the history is judged linearizable with no lost acknowledged write; ``wait_replicas`` is refused
on a cluster client; ``pause`` (shared with the Sentinel nemesis) stops a replica's acknowledgements."""

from __future__ import annotations

import uuid

import pytest

from breaker_history import BACKEND, Recorded
from pytest_cbchaos.breaker import RedisStore
from pytest_cbchaos.breaker.lost_writes import judge, read_survivors
from pytest_cbchaos.history.recorder import Recorder


def test_decisions_continue_after_a_shard_failover(cbchaos_redis_cluster, cbchaos_faults) -> None:
    topo = cbchaos_redis_cluster
    recorder = Recorder(1)
    client = topo.cluster_client()
    store = RedisStore(client, key_prefix=f"cl{uuid.uuid4().hex[:8]}")
    s = Recorded(store, recorder)
    for _ in range(3):
        reply = s.failure()
    assert reply["state"] == "open"
    others = {b: topo.owner(store.key(b)) for b in "cdefgh"}
    old, loads = topo.owner(store.key(BACKEND)), store.stats["script_load"]
    with topo.replica_of(old).admin() as c:  # the shared topology may have served scripts from it before
        c.script_flush()
    assert {n.name for n in others.values()} | {old.name} == {n.name for n in topo.primaries()}  # every shard used
    for b in others:
        store.atomic_record_failure(b, 5, 60)
    window = cbchaos_faults.cluster(topo).failover(store.key(BACKEND))
    new = topo.owner(store.key(BACKEND))
    assert new is not old and window.params["new_primary"] == new.name and old.role_now() == "slave"
    assert s.state()["state"] == "open"  # a coordinated failover loses nothing
    claim = store.try_transition_and_claim_probe(BACKEND)
    assert not claim.admitted and claim.record["_reason"] == "cooldown"
    assert store.stats["script_load"] > loads  # the promoted replica had no script: NOSCRIPT -> SCRIPT LOAD
    with new.admin() as c:  # the decisions are made on the new primary
        assert c.hget(store.key(BACKEND), "state") == b"open"
    assert all(store.get_state(b)["failure_count"] == 1 for b in others)
    recorder.close()
    with new.admin() as admin:
        verdict = judge(recorder.history(), read_survivors(admin, store, [BACKEND]))
    assert verdict.verdict == "ok" and verdict.lost.count == 0 and verdict.lost.checked == 3, verdict.describe()
    with pytest.raises(ValueError, match="wait_replicas needs a client whose pipeline runs on one connection"):
        RedisStore(client, wait_replicas=1)  # WAIT would run on another node than the write
    replica = topo.replica_of(new)
    with cbchaos_faults.cluster(topo).pause(replica.name):  # the base nemesis: a paused replica acknowledges nothing
        with new.admin() as c:
            c.set("{" + store.key(BACKEND) + "}:w", 1)  # the same slot
            assert c.execute_command("WAIT", 1, 100) == 0
    topo.wait_ready(10)
    assert [w.kind for w in cbchaos_faults.journal.windows()] == ["failover", "pause"]
