"""``kill`` and ``pause`` of the Sentinel nemesis (docs/redis-topologies.md#the-nemesis): journaled windows,
healed; a paused replica shows in the store's ``WAIT`` count (the durability policy reports it, never hides it)."""

from __future__ import annotations

import uuid

import pytest

from pytest_cbchaos.breaker import RedisStore

HEALTHY_WAIT_MS = 5000  # a healthy replica's ack is waited for, not timed: WAIT returns when both have acked
HEALTHY_SOCKET_S = HEALTHY_WAIT_MS / 1000 + 5  # the client outwaits that WAIT (its default 2 s would cut it short)
SHORT_WAIT_MS = 150  # the bound inside the pause: the paused replica cannot ack however long the box takes


def test_paused_replica_is_a_short_wait_count_and_heals(cbchaos_redis_sentinel, cbchaos_faults) -> None:
    topo = cbchaos_redis_sentinel
    nemesis = cbchaos_faults.sentinel(topo)
    healthy = RedisStore(topo.master_client(socket_timeout=HEALTHY_SOCKET_S), key_prefix=f"np{uuid.uuid4().hex[:8]}",
                         wait_replicas=2, wait_timeout_ms=HEALTHY_WAIT_MS)
    store = RedisStore(topo.master_client(), key_prefix=healthy.key_prefix, wait_replicas=2,
                       wait_timeout_ms=SHORT_WAIT_MS)
    assert healthy.atomic_record_failure("b", 5, 60)["_replicas_acked"] == 2
    replica = topo.replicas_of(topo.primary())[0]
    one = RedisStore(topo.master_client(socket_timeout=HEALTHY_SOCKET_S), key_prefix=healthy.key_prefix,
                     wait_replicas=1, wait_timeout_ms=HEALTHY_WAIT_MS)
    with nemesis.pause(replica.name) as fault:
        short = store.atomic_record_failure("b", 5, 60)
        counted = one.atomic_record_failure("b", 5, 60)  # the live replica's ack, waited for: the paused one is absent
        assert fault.window.active and fault.window.params == {"role": replica.role}
    # the live replica may miss the short bound on a busy box (0), the paused one never makes it 2
    assert short["_replicas_acked"] in (0, 1) and short["failure_count"] == 2 and store.stats["wait_short"] == 1
    assert counted["_replicas_acked"] == 1 and counted["failure_count"] == 3 and one.stats["wait_short"] == 0
    assert not fault.window.active
    topo.wait_ready(10)
    assert healthy.atomic_record_failure("b", 5, 60)["_replicas_acked"] == 2 and healthy.stats["wait_short"] == 0


def test_killed_sentinel_leaves_a_majority_and_is_restarted(cbchaos_redis_sentinel, cbchaos_faults) -> None:
    topo = cbchaos_redis_sentinel
    nemesis = cbchaos_faults.sentinel(topo)
    primary, sentinel = topo.primary(), topo.sentinels[0]
    fault = nemesis.kill(sentinel)
    assert not sentinel.process.alive and topo.primary() is primary  # two of three still name it
    fault.heal()
    assert sentinel.process.alive
    topo.wait_ready(10)
    assert [(w.kind, w.target, w.active) for w in cbchaos_faults.journal.windows()] == [
        ("kill", sentinel.name, False)]
    with pytest.raises(ValueError, match="no node named 'redis-9'; expected one of redis-0"):
        nemesis.pause("redis-9")
