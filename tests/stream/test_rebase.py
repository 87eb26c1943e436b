"""The `rebase` script (docs/stream-design.md#restart-and-lost-suffix, docs/stream-design.md#failure-paths W4) against
a real redis-server without persistence: an RDB snapshot, more appends, a restart that brings the snapshot back (a
lost suffix). The producer's next append answers ROLLBACK; the relay calls `rebase` once: the epoch rotates, the
message ends with exactly one `error{code: store.rollback, lost_from, lost_to}`, no `(epoch, seq)`
carries two payloads, and consumers holding the old epoch get `epoch_changed` / `cursor_ahead` (INV-25)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Callable

from tests.stream.inv_kit import no_violations, redis_client, run_bounded, wait_until
from tests.stream.sched_lag import PathLag, wait_within_async
from test_inv_redis import _Acked, _Phased
from tests.stream.rollback_kit import (LOSS_NOTICES, consumer_loss_violations, count_rebases, payload_conflicts,
                                        rollback_terminal_violations, start_live_turn)
from pytest_cbchaos.stream import StreamConfig, StreamStore, TurnRelay, check_stream
from pytest_cbchaos.stream.reader import ReadLoop, StreamConnectError
from pytest_cbchaos.testing import stream_mutants as M

# a lease far longer than snapshot-to-restart: the snapshot brings the lease back with its expiry
# time, and were it past, a renew would answer FENCED before the next append meets the lost suffix.
# Checked per run (the lease's PTTL at the snapshot against the measured snapshot-to-restart time).
CFG = StreamConfig.ci(lease_ttl_s=30.0, lease_renew_s=1.0, write_deadline_s=8.0, terminal_deadline_s=10.0,
                      outage_close_s=10.0)


async def _rollback(server: Any, faults: Any, *, store_cls: type[StreamStore] = StreamStore,
                    mutate: Callable[[TurnRelay], TurnRelay] = lambda r: r) -> list[str]:
    bad: list[str] = []
    pc, cc, ac = (redis_client(server.host, server.port, server.password) for _ in range(3))
    pstore, cstore, astore = store_cls(pc, CFG), StreamStore(cc, CFG), StreamStore(ac, CFG)
    acked = _Acked(pstore)
    rebases = count_rebases(pstore)
    history: list[dict[str, Any]] = []
    relay = mutate(TurnRelay(pstore, CFG, history=history))
    src = _Phased((5, 6, 6))
    try:
        live = await start_live_turn(relay, cstore, "rb", src)
        hd, loop, d, notices, consumer = live.hd, live.loop, live.delivery, live.notices, live.consumer
        await wait_until(lambda: len(acked.seqs) >= 5, 15, "phase 0 acknowledged")
        with server.client() as c:
            lease_left_s = c.pttl(astore.keys("rb")[4]) / 1000
            c.save()  # what the restart brings back
        saved_at = time.monotonic()
        survived = max(acked.seqs)
        src.gates[0].set()
        await wait_until(lambda: len(acked.seqs) >= 11 and len(d.items) >= 12, 15, "phase 1 delivered")
        acked_before = max(acked.seqs)
        await asyncio.to_thread(faults.process(server).restart)
        took = time.monotonic() - saved_at
        if took >= lease_left_s - CFG.lease_renew_s:
            raise AssertionError(f"snapshot to restart took {took:.2f}s, the restored lease had {lease_left_s:.2f}s "
                                 "left: it expired, scenario not realized")
        src.gates[1].set()
        # 30 s for ROLLBACK, rebase and the terminal, plus the scheduling lag measured meanwhile
        lag = PathLag([os.getpid(), server.pid])
        await wait_within_async(lambda: hd.task is None or hd.task.done(), 30, lag, "the producer to end")
        out = await hd.wait()
        # the producer: one ROLLBACK, one rebase, nothing appended after it, an outcome that says so
        if out.stop_reason != "ROLLBACK":
            bad.append(f"the producer did not meet ROLLBACK: {out}")
        if rebases != ["OK"] or out.rebase != "OK":
            bad.append(f"rebase calls {rebases}, outcome.rebase {out.rebase!r}: want exactly one OK")
        statuses = [h.get("status") for h in history if h["type"] in ("ok", "fail")]
        if "ROLLBACK" in statuses and statuses.index("ROLLBACK") != len(statuses) - 1:
            bad.append(f"appends after ROLLBACK: {statuses}")
        if (out.status, out.terminal_kind) != ("failed", "error"):
            bad.append(f"the turn's outcome is {out.status}/{out.terminal_kind}, not failed/error")
        # the store: rotated epoch, the message ends with exactly one store.rollback error
        meta = await astore.meta("rb")
        if meta is None or meta["epoch"] == hd.epoch or meta["epoch"] != out.epoch:
            bad.append(f"epoch not rotated: {hd.epoch} -> meta {meta and meta['epoch']}, outcome {out.epoch}")
        replay = [e for e in await astore.read_all("rb") if e.message_id == hd.message_id]  # bounded if unfinished
        terminal_bad = rollback_terminal_violations(replay, survived + 1, acked_before)
        bad += terminal_bad
        if not terminal_bad and (replay[-1].seq != survived + 1 or replay[-1].epoch != (meta or {}).get("epoch")):
            bad.append(f"terminal at (epoch {replay[-1].epoch}, seq {replay[-1].seq}), want the new epoch, "
                       f"seq {survived + 1}")
        rep = check_stream(await astore.read_all("rb"), records=await astore.records("rb"))
        bad += [f"checker: {v}" for v in rep.violations]
        rec = await astore.record("rb", hd.message_id)
        if rec is None or (rec["status"], rec.get("error_code")) != ("failed", "store.rollback"):
            bad.append(f"record {rec}: want failed / store.rollback")
        if await astore.lease_holder("rb") is not None:
            bad.append("the lease outlived the rebase")
        # consumers: the live one ends with a loss notice; a reconnect with the old epoch is refused
        bad += await consumer_loss_violations(consumer, loop, notices, CFG)
        for cursor in (survived, loop.cursor):
            try:
                await ReadLoop(cstore, "rb", after_seq=cursor, epoch=hd.epoch, message_id=hd.message_id).connect()
                bad.append(f"a reconnect at cursor {cursor} with the old epoch was accepted")
            except StreamConnectError as exc:
                if exc.code not in LOSS_NOTICES:
                    bad.append(f"a reconnect at cursor {cursor} with the old epoch answered {exc.code}")
        bad += payload_conflicts([x for x, _ in d.items] + replay)
    finally:
        await relay.aclose()
        for c in (pc, cc, ac):
            await c.aclose()
    return bad


def test_rollback_is_rebased(own_redis, cbchaos_faults):
    no_violations(run_bounded(_rollback(own_redis(), cbchaos_faults), 120))


def test_rebase_mutants_are_caught(own_redis, cbchaos_faults):
    """A relay that stops on ROLLBACK without `rebase`, and a `rebase` that keeps the epoch."""
    server = own_redis()
    bad = run_bounded(_rollback(server, cbchaos_faults, mutate=M.m25_no_rebase), 120)
    assert any("want exactly one OK" in v for v in bad) and any("epoch not rotated" in v for v in bad), bad
    with server.client() as c:
        c.flushall()
    bad = run_bounded(_rollback(server, cbchaos_faults, store_cls=M.M25RebaseKeepsEpoch), 120)
    assert any("two payloads" in v for v in bad) and any("epoch not rotated" in v for v in bad), bad
