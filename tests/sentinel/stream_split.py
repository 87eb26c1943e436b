"""A durable-stream turn across a split brain, for any replicated topology (docs/stream.md#replicated-redis-failover,
docs/stream.md#redis-cluster): phase 0 replicated, phase 1 acknowledged by a cut-off primary only, then a replica
promoted and the cut-off primary demoted. Returns the violations found (relay rebase, consumer notice, one
payload per ``(epoch, seq)``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from tests.stream.inv_kit import wait_until
from tests.stream.rollback_kit import (consumer_loss_violations, count_rebases, payload_conflicts,
                                        rollback_terminal_violations, start_live_turn)
from tests.stream.test_inv_redis import _Acked, _Phased
from pytest_cbchaos.stream import StreamConfig, StreamStore, TurnRelay

CFG = StreamConfig.ci(lease_ttl_s=30.0, lease_renew_s=1.0, write_deadline_s=8.0, terminal_deadline_s=10.0,
                      outage_close_s=10.0)
CONV = "fo"


@dataclass
class SplitSteps:
    """How a topology is split (blocking calls, run on a thread): ``client()`` a new asyncio client;
    ``cut(log_key)`` isolates the primary serving that key and returns a handle; ``promote(handle)`` waits for
    (or makes) a replica's promotion; ``heal(handle)`` reconnects and waits for the demotion."""

    client: Callable[[], Any]
    wait_ready: Callable[[], Any]
    cut: Callable[[str], Any]
    promote: Callable[[Any], Any]
    heal: Callable[[Any], Any]


async def split_brain_turn(steps: SplitSteps, store_cls: type[StreamStore] = StreamStore) -> list[str]:
    bad: list[str] = []
    pc, cc = steps.client(), steps.client()
    pstore, cstore = store_cls(pc, CFG), StreamStore(cc, CFG)
    acked = _Acked(pstore)
    rebases = count_rebases(pstore)
    relay = TurnRelay(pstore, CFG)
    src = _Phased((4, 5, 3))
    try:
        live = await start_live_turn(relay, cstore, CONV, src)
        hd, loop, d, notices, consumer = live.hd, live.loop, live.delivery, live.notices, live.consumer
        await wait_until(lambda: len(acked.seqs) >= 4, 15, "phase 0 acknowledged")
        await asyncio.to_thread(steps.wait_ready)  # phase 0 is on every replica
        survived = max(acked.seqs)
        split = await asyncio.to_thread(steps.cut, cstore.keys(CONV)[1])
        src.gates[0].set()  # phase 1: acknowledged by the isolated primary only
        await wait_until(lambda: len(acked.seqs) >= 9 and len(d.items) >= 10, 15, "phase 1 delivered")
        acked_before = max(acked.seqs)
        await asyncio.to_thread(steps.promote, split)
        await asyncio.to_thread(steps.heal, split)  # the old primary is demoted: phase 1 is gone
        src.gates[1].set()
        await wait_until(lambda: hd.task is None or hd.task.done(), 30, "the producer to end")
        out = await hd.wait()
        if out.stop_reason != "ROLLBACK" or rebases != ["OK"]:
            bad.append(f"the producer: stop {out.stop_reason}, rebase calls {rebases}: want ROLLBACK and one OK")
        meta = await cstore.meta(CONV)
        if meta is None or meta["epoch"] == hd.epoch:
            bad.append(f"epoch not rotated: {hd.epoch} -> {meta and meta['epoch']}")
        replay = [e for e in await cstore.read_all(CONV) if e.message_id == hd.message_id]
        bad += rollback_terminal_violations(replay, survived + 1, acked_before) if replay else ["nothing replayed"]
        bad += await consumer_loss_violations(consumer, loop, notices, CFG)
        bad += payload_conflicts([x for x, _ in d.items] + replay)
    finally:
        await relay.aclose()
        for c in (pc, cc):
            await c.aclose()
    return bad
