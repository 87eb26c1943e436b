"""The durable stream across a Sentinel split brain (docs/stream.md#replicated-redis-failover): the relay and a
live consumer on Sentinel-managed clients; a turn's middle part is acknowledged by a primary the sentinels have
cut off, then lost when it is demoted. The relay's next append meets ROLLBACK and calls ``rebase`` once (epoch
rotated, one ``store.rollback`` error naming the lost range); the consumer gets ``epoch_changed`` or
``cursor_ahead``; no ``(epoch, seq)`` is delivered with two payloads. The rebase mutant that keeps the epoch is
caught (two payloads for one ``(epoch, seq)``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.stream.inv_kit import no_violations, run_bounded, wait_until
from tests.stream.rollback_kit import (consumer_loss_violations, count_rebases, payload_conflicts,
                                        rollback_terminal_violations, start_live_turn)
from tests.stream.test_inv_redis import _Acked, _Phased
from pytest_cbchaos.stream import StreamConfig, StreamStore, TurnRelay
from pytest_cbchaos.testing import stream_mutants as M

CFG = StreamConfig.ci(lease_ttl_s=30.0, lease_renew_s=1.0, write_deadline_s=8.0, terminal_deadline_s=10.0,
                      outage_close_s=10.0)


async def _split_brain_turn(topo: Any, nemesis: Any, store_cls: type[StreamStore] = StreamStore) -> list[str]:
    bad: list[str] = []
    pc, cc = topo.async_master_client(socket_timeout=1.0), topo.async_master_client(socket_timeout=1.0)
    pstore, cstore = store_cls(pc, CFG), StreamStore(cc, CFG)
    acked = _Acked(pstore)
    rebases = count_rebases(pstore)
    relay = TurnRelay(pstore, CFG)
    src = _Phased((4, 5, 3))
    try:
        live = await start_live_turn(relay, cstore, "fo", src)
        hd, loop, d, notices, consumer = live.hd, live.loop, live.delivery, live.notices, live.consumer
        await wait_until(lambda: len(acked.seqs) >= 4, 15, "phase 0 acknowledged")
        await asyncio.to_thread(topo.wait_ready, 10)  # phase 0 is on every replica
        survived = max(acked.seqs)
        old = await asyncio.to_thread(topo.primary)
        split = await asyncio.to_thread(nemesis.isolate_primary)
        src.gates[0].set()  # phase 1: acknowledged by the isolated primary only
        await wait_until(lambda: len(acked.seqs) >= 9 and len(d.items) >= 10, 15, "phase 1 delivered")
        acked_before = max(acked.seqs)
        await asyncio.to_thread(nemesis.wait_new_primary, old)
        await asyncio.to_thread(split.heal)  # the old primary is demoted: phase 1 is gone
        src.gates[1].set()
        await wait_until(lambda: hd.task is None or hd.task.done(), 30, "the producer to end")
        out = await hd.wait()
        if out.stop_reason != "ROLLBACK" or rebases != ["OK"]:
            bad.append(f"the producer: stop {out.stop_reason}, rebase calls {rebases}: want ROLLBACK and one OK")
        meta = await cstore.meta("fo")
        if meta is None or meta["epoch"] == hd.epoch:
            bad.append(f"epoch not rotated: {hd.epoch} -> {meta and meta['epoch']}")
        replay = [e for e in await cstore.read_all("fo") if e.message_id == hd.message_id]
        bad += rollback_terminal_violations(replay, survived + 1, acked_before) if replay else ["nothing replayed"]
        bad += await consumer_loss_violations(consumer, loop, notices, CFG)
        bad += payload_conflicts([x for x, _ in d.items] + replay)
    finally:
        await relay.aclose()
        for c in (pc, cc):
            await c.aclose()
    return bad


def test_split_brain_rollback_is_detected_by_relay_and_consumer(cbchaos_redis_sentinel, cbchaos_faults) -> None:
    t0 = time.monotonic()
    no_violations(run_bounded(_split_brain_turn(cbchaos_redis_sentinel, cbchaos_faults.sentinel(cbchaos_redis_sentinel)),
                              90))
    assert time.monotonic() - t0 < 90


def test_rebase_keeping_the_epoch_is_caught_across_failover(cbchaos_redis_sentinel, cbchaos_faults) -> None:
    bad = run_bounded(_split_brain_turn(cbchaos_redis_sentinel, cbchaos_faults.sentinel(cbchaos_redis_sentinel),
                                        store_cls=M.M25RebaseKeepsEpoch), 90)
    assert any("two payloads" in v for v in bad) and any("epoch not rotated" in v for v in bad), bad
