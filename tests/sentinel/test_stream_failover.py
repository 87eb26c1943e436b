"""The durable stream across a Sentinel split brain (docs/stream.md#replicated-redis-failover): the relay and a
live consumer on Sentinel-managed clients; a turn's middle part is acknowledged by a primary the sentinels have
cut off, then lost when it is demoted. The relay's next append meets ROLLBACK and calls ``rebase`` once (epoch
rotated, one ``store.rollback`` error naming the lost range); the consumer gets ``epoch_changed`` or
``cursor_ahead``; no ``(epoch, seq)`` is delivered with two payloads. The rebase mutant that keeps the epoch is
caught (two payloads for one ``(epoch, seq)``)."""

from __future__ import annotations

import time
from typing import Any

from stream_split import SplitSteps, split_brain_turn
from tests.stream.inv_kit import no_violations, run_bounded
from pytest_cbchaos.testing import stream_mutants as M


def _sentinel_split(topo: Any, nemesis: Any) -> SplitSteps:
    def cut(_key: str) -> Any:
        return topo.primary(), nemesis.isolate_primary()

    return SplitSteps(client=lambda: topo.async_master_client(socket_timeout=1.0),
                      wait_ready=lambda: topo.wait_ready(10), cut=cut,
                      promote=lambda split: nemesis.wait_new_primary(split[0]), heal=lambda split: split[1].heal())


def test_split_brain_rollback_is_detected_by_relay_and_consumer(cbchaos_redis_sentinel, cbchaos_faults) -> None:
    t0 = time.monotonic()
    steps = _sentinel_split(cbchaos_redis_sentinel, cbchaos_faults.sentinel(cbchaos_redis_sentinel))
    no_violations(run_bounded(split_brain_turn(steps), 90))
    assert time.monotonic() - t0 < 90


def test_rebase_keeping_the_epoch_is_caught_across_failover(cbchaos_redis_sentinel, cbchaos_faults) -> None:
    steps = _sentinel_split(cbchaos_redis_sentinel, cbchaos_faults.sentinel(cbchaos_redis_sentinel))
    bad = run_bounded(split_brain_turn(steps, store_cls=M.M25RebaseKeepsEpoch), 90)
    assert any("two payloads" in v for v in bad) and any("epoch not rotated" in v for v in bad), bad
