"""The durable stream on a real Redis Cluster (docs/stream.md#redis-cluster): a conversation's keys share one
hash slot; the relay and a live consumer on ``redis.asyncio`` ``RedisCluster`` clients; a turn's middle part is
acknowledged by a primary cut off from the cluster, lost once its replica is promoted. The relay meets ROLLBACK
and rebases once, the consumer gets ``epoch_changed``/``cursor_ahead``, no ``(epoch, seq)`` is delivered with two
payloads; the rebase mutant that keeps the epoch is caught."""

from __future__ import annotations

from typing import Any

from redis.cluster import key_slot
from stream_split import CFG, CONV, SplitSteps, split_brain_turn
from tests.stream.inv_kit import no_violations, run_bounded
from pytest_cbchaos.stream import StreamStore
from pytest_cbchaos.testing import stream_mutants as M


def _cluster_split(topo: Any, nemesis: Any) -> SplitSteps:
    return SplitSteps(client=lambda: topo.async_cluster_client(socket_timeout=1.0),
                      wait_ready=lambda: topo.wait_ready(10), cut=nemesis.isolate_primary,
                      promote=nemesis.promote_replica, heal=lambda split: split.heal())


def test_a_conversation_lives_in_one_slot() -> None:
    keys = StreamStore.__new__(StreamStore)
    keys.prefix = CFG.prefix
    assert len({key_slot(k.encode()) for k in keys.keys(CONV)}) == 1


def test_cluster_split_brain_rollback_is_detected(cbchaos_redis_cluster, cbchaos_faults) -> None:
    steps = _cluster_split(cbchaos_redis_cluster, cbchaos_faults.cluster(cbchaos_redis_cluster))
    no_violations(run_bounded(split_brain_turn(steps), 90))


def test_rebase_keeping_the_epoch_is_caught_on_the_cluster(cbchaos_redis_cluster, cbchaos_faults) -> None:
    steps = _cluster_split(cbchaos_redis_cluster, cbchaos_faults.cluster(cbchaos_redis_cluster))
    bad = run_bounded(split_brain_turn(steps, store_cls=M.M25RebaseKeepsEpoch), 90)
    assert any("two payloads" in v for v in bad) and any("epoch not rotated" in v for v in bad), bad
