"""Redis-side invariants (docs/stream-design.md#invariants) against real redis-server: INV-24 (durable restart,
AOF `always`), 25 (loss detected, never silent), 28 (isolation across conversations), 29 (status
from Redis only, two relays), 30 (bounded resources). Each check returns its violations; a paired
test runs it against a mutant (or a losing server) and asserts it is caught."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import secrets
import time
from typing import Any

import aiohttp
from aiohttp import web

from tests.stream.inv_kit import no_violations as _no_violations, GatedSource, HttpKit, redis_client, run_bounded, wait_until
from tests.stream.sched_lag import PathLag, kit_lag, wait_within_async
from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.stream import Reaper, ScriptedSource, StreamConfig, StreamStore, TurnRelay, check_stream
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.envelope import Envelope, encode_payload
from pytest_cbchaos.stream.http import make_app
from pytest_cbchaos.stream.reader import LogReader, Notice, ReadLoop, StreamConnectError
from pytest_cbchaos.stream.sources import SourceEvent, text_turn
from pytest_cbchaos.testing import stream_mutants as M

CFG = StreamConfig.ci()


class _Acked:
    """Wraps a store's append: every acknowledged (OK/DUP) append's seqs."""

    def __init__(self, store: StreamStore) -> None:
        self.seqs: list[int] = []
        orig = store.append

        async def append(call: Any) -> Any:
            r = await orig(call)
            if r.status in ("OK", "DUP"):
                self.seqs += list(range(r.first_seq, r.last_seq + 1))
            return r

        store.append = append  # type: ignore[method-assign]


async def _consume(loop: ReadLoop, d: Delivery, notices: list[str]) -> None:
    try:
        async for item in loop.items():
            if isinstance(item, Notice):
                notices.append(item.code)
            else:
                d.add(item, time.monotonic())
    finally:
        await loop.aclose()


# -- INV-24 ----------------------------------------------------------------------------------------
DURABLE_CFG = StreamConfig.ci(lease_ttl_s=6.0, lease_renew_s=1.0, reaper_interval_s=0.5, write_deadline_s=8.0,
                              terminal_deadline_s=10.0, outage_close_s=10.0)


async def _durable_restart(server: Any, faults: Any) -> list[str]:
    """SIGKILL + restart of redis-server mid-turn and right before the terminal call."""
    bad: list[str] = []
    cfg = DURABLE_CFG
    pc, cc = redis_client(server.host, server.port, server.password), redis_client(server.host, server.port, server.password)
    pstore, cstore = StreamStore(pc, cfg), StreamStore(cc, cfg)
    acked = _Acked(pstore)
    relay = TurnRelay(pstore, cfg)
    hd = await relay.start("d24", ScriptedSource(text_turn(60), delay_s=0.01), model_id="m")
    loop = ReadLoop(cstore, "d24", after_seq=hd.after_seq, message_id=hd.message_id)
    await loop.connect()
    d, notices = Delivery(hd.after_seq, name="c24", target=hd.message_id), []
    consumer = asyncio.create_task(_consume(loop, d, notices))
    await wait_until(lambda: len(acked.seqs) >= 8, 10, "appends before the kill")
    await asyncio.to_thread(faults.process(server).restart)  # SIGKILL, relaunch on the same port and dir
    state: dict[str, Any] = {}

    def arm(script: str, kinds: tuple[str, ...]) -> None:  # the terminal call: Redis dies right before it
        if script == "append" and "complete" in kinds and "restart" not in state:
            faults.process(server).kill()
            state["restart"] = asyncio.get_running_loop().create_task(asyncio.to_thread(server.process.start))

    pstore.before_call = arm
    out = await asyncio.wait_for(hd.wait(), 60)
    if "restart" in state:
        await asyncio.wait_for(state["restart"], 30)
    await asyncio.wait_for(consumer, 30)
    admin = redis_client(server.host, server.port, server.password, 2.0)
    astore = StreamStore(admin, cfg)
    try:
        meta = await astore.meta("d24")
        if meta is None or meta["epoch"] != hd.epoch:
            bad.append(f"INV-24: epoch not kept across the restart: {hd.epoch} -> {meta and meta['epoch']}")
            return bad
        logged = {e.seq for e in await astore.read_all("d24")}
        lost = sorted(set(acked.seqs) - logged)
        if lost:
            bad.append(f"INV-24: acknowledged entries lost: {lost[:10]}")
        if out.status not in ("completed", "interrupted"):
            bad.append(f"INV-24: the turn ended {out.status} ({out.stop_reason})")
        if "stream_lost" in notices or "epoch_changed" in notices or "cursor_ahead" in notices:
            bad.append(f"INV-24: the consumer saw {notices}")
        rep = check_stream(await astore.read_all("d24"), floor_seq=meta["floor_seq"], last_seq=meta["last_seq"],
                           records=await astore.records("d24"), deliveries=[d], emissions=relay.emissions)
        bad += [f"INV-24: {v}" for v in rep.violations]
    finally:
        await relay.aclose()
        for c in (pc, cc, admin):
            await c.aclose()
    return bad


def test_inv24_durable_restart_aof_always(own_redis, cbchaos_faults):
    server = own_redis(persistence="aof-always")
    bad = run_bounded(_durable_restart(server, cbchaos_faults), 120)
    assert state_of(server) == ("yes", "always")
    _no_violations(bad)


def test_inv24_losing_server_is_caught(own_redis, cbchaos_faults):
    """The same check against the default launcher (no persistence): the restart loses the log."""
    server = own_redis()
    bad = run_bounded(_durable_restart(server, cbchaos_faults), 120)
    assert any("INV-24: epoch not kept" in v for v in bad), bad


def state_of(server: Any) -> tuple[str, str]:
    with server.client() as c:
        return c.config_get("appendonly")["appendonly"], c.config_get("appendfsync")["appendfsync"]


# -- INV-25 ----------------------------------------------------------------------------------------
class _Phased(ScriptedSource):
    """Deltas in three phases separated by two gates."""

    def __init__(self, sizes: tuple[int, int, int]) -> None:
        super().__init__([])
        self.sizes = sizes
        self.gates = (asyncio.Event(), asyncio.Event())

    async def __aiter__(self):  # type: ignore[override]
        n = 0
        for phase, size in enumerate(self.sizes):
            if phase:
                await self.gates[phase - 1].wait()
            for _ in range(size):
                n += 1
                yield SourceEvent("text_delta", {"part_id": "p", "text": f"phase{phase}-{n} "})
        yield SourceEvent("complete", {"finish_reason": "stop", "usage": {}})


def _sha(e: Envelope) -> str:
    return hashlib.sha256(e.payload_bytes).hexdigest()


# The snapshot brings the lease back with its expiry time: had it passed by the restart, a renew
# would answer FENCED before the next append meets the lost suffix (another scenario). The lease's
# remainder at the snapshot is checked against the measured snapshot-to-restart time on every run.
INV25_CFG = StreamConfig.ci(outage_close_s=10.0, lease_ttl_s=4.0, lease_renew_s=1.0)


async def _loss(server: Any, faults: Any, *, snapshot: bool, rotate: bool = True,
                loop_class: type[ReadLoop] = ReadLoop, no_rebase: bool = False) -> list[str]:
    """Redis without persistence restarted mid-turn: from an RDB snapshot taken earlier (a lost
    suffix -> ROLLBACK) or from nothing (-> NO_STREAM)."""
    bad: list[str] = []
    cfg = INV25_CFG
    pc, cc, ac = (redis_client(server.host, server.port, server.password) for _ in range(3))
    pstore, cstore, astore = StreamStore(pc, cfg), StreamStore(cc, cfg), StreamStore(ac, cfg)
    acked = _Acked(pstore)
    relay = TurnRelay(pstore, cfg)
    if no_rebase:  # a producer that meets ROLLBACK but never rebases (as if it died): the reaper ends the turn
        M.m25_no_rebase(relay)
    reaper = Reaper(StreamStore(ac, cfg), rotate_epoch_best_effort=rotate)
    src = _Phased((5, 6, 6))
    try:
        hd = await relay.start("d25", src, model_id="m")
        loop = loop_class(cstore, "d25", after_seq=hd.after_seq, message_id=hd.message_id)
        await loop.connect()
        d, notices = Delivery(hd.after_seq, name="live", target=hd.message_id), []
        consumer = asyncio.create_task(_consume(loop, d, notices))
        await wait_until(lambda: len(acked.seqs) >= 5, 10, "phase 0 durable")
        if snapshot:
            with server.client() as c:
                lease_left_s = c.pttl(astore.keys("d25")[4]) / 1000
                c.save()  # RDB snapshot: what the restart will bring back
            saved_at = time.monotonic()
        src.gates[0].set()
        await wait_until(lambda: len(acked.seqs) >= 11 and len(d.items) >= 12, 10, "phase 1 delivered")
        await asyncio.to_thread(faults.process(server).restart)
        if snapshot and (took := time.monotonic() - saved_at) >= lease_left_s - cfg.lease_renew_s:
            raise AssertionError(f"snapshot to restart took {took:.2f}s, the restored lease had {lease_left_s:.2f}s "
                                 "left: it expired, scenario not realized")
        src.gates[1].set()
        out = await asyncio.wait_for(hd.wait(), 20)
        want = "ROLLBACK" if snapshot else "NO_STREAM"
        if out.stop_reason != want:
            bad.append(f"INV-25: the producer did not stop on {want}: {out}")
        # the live consumer notices at its next wake-up (measured ~0.1 s on a loaded machine); the bound is
        # 4 heartbeats plus the scheduling lag measured meanwhile on its path (this process, redis-server)
        try:
            await wait_within_async(consumer.done, cfg.heartbeat_s * 4, PathLag([os.getpid(), server.pid]),
                                    "the live consumer's loss notice")
        except AssertionError:
            pass  # a consumer still waiting is the violation below
        if not consumer.done():
            consumer.cancel()
            await loop.aclose()  # ends items() at its next check whatever the cancel met
            bad.append(f"INV-25: the live consumer (cursor {loop.cursor}) waits silently past the lost log")
        elif not {"cursor_ahead", "epoch_changed", "stream_lost"} & set(notices):
            bad.append(f"INV-25: the live consumer ended without a loss notice: {notices}")
        await asyncio.gather(consumer, return_exceptions=True)
        if not snapshot:
            try:
                await ReadLoop(cstore, "d25", after_seq=loop.cursor, epoch=hd.epoch).connect()
                bad.append("INV-25: a consumer with the old epoch connected to a lost conversation")
            except StreamConnectError as exc:
                if exc.code != "stream_lost":
                    bad.append(f"INV-25: reconnect to a lost conversation answered {exc.code}")
            return bad
        # the rebase ends the turn (without it, the reaper ends the orphan); no observer gets two
        # payloads for one (epoch, seq)
        if no_rebase:
            reaper.start()
        await wait_until(lambda: _finished(astore, hd.message_id), cfg.lease_ttl_s + 10, "the turn's terminal")
        replay = await LogReader(astore).collect("d25", message_id=hd.message_id, after_seq=0)
        seen: dict[tuple[str, int], str] = {}
        for e in [x for x, _ in d.items] + replay:
            if seen.setdefault((e.epoch, e.seq), _sha(e)) != _sha(e):
                bad.append(f"INV-25: two payloads for (epoch {e.epoch}, seq {e.seq})")
        try:
            await ReadLoop(cstore, "d25", after_seq=loop.cursor, epoch=hd.epoch,
                           message_id=hd.message_id).connect()
            bad.append(f"INV-25: a reconnect at cursor {loop.cursor} with the old epoch was accepted")
        except StreamConnectError as exc:
            if exc.code not in ("cursor_ahead", "epoch_changed", "stream_lost"):
                bad.append(f"INV-25: a reconnect past the lost suffix answered {exc.code}")
    finally:
        await reaper.stop()
        await relay.aclose()
        for c in (pc, cc, ac):
            await c.aclose()
    return bad


async def _finished(store: StreamStore, mid: str) -> bool:
    rec = await store.record("d25", mid)
    return rec is not None and rec["status"] != "in_progress"


def test_inv25_lost_suffix_detected(own_redis, cbchaos_faults):
    _no_violations(run_bounded(_loss(own_redis(), cbchaos_faults, snapshot=True), 90))


def test_inv25_lost_conversation_detected(own_redis, cbchaos_faults):
    _no_violations(run_bounded(_loss(own_redis(), cbchaos_faults, snapshot=False), 90))


def test_inv25_mutants_are_caught(own_redis, cbchaos_faults):
    """With a producer that does not rebase after ROLLBACK (M25 no rebase, as if it died): M25 (no
    cursor_ahead check at wake-up): the live consumer waits silently. The reaper without epoch
    rotation under best_effort (the `Reaper` default, see docs/stream.md known limits): the reaper's
    entry reuses a lost (epoch, seq) with other bytes."""
    server = own_redis()
    bad = run_bounded(_loss(server, cbchaos_faults, snapshot=True, loop_class=M.M25NoCursorAhead, no_rebase=True), 90)
    assert any("waits silently" in v for v in bad), bad
    with server.client() as c:
        c.flushall()
    bad = run_bounded(_loss(server, cbchaos_faults, snapshot=True, rotate=False, no_rebase=True), 90)
    assert any("two payloads" in v for v in bad), bad


# -- INV-28 ----------------------------------------------------------------------------------------
async def _snapshot(store: StreamStore, conv: str) -> tuple[list[tuple[int, str]], dict[str, Any]]:
    recs = await store.records(conv)
    for r in recs.values():
        r.pop("updated_ms", None)
    return [(e.seq, e.payload_bytes.decode()) for e in await store.read_all(conv)], recs


async def _isolation(proc: Any, proxy: Any, faults: Any, relay_cls: type[TurnRelay] = TurnRelay) -> list[str]:
    bad: list[str] = []
    xc = redis_client(proxy.listen_host, proxy.listen_port, proc.password)
    yc, ac = redis_client(proc.host, proc.port, proc.password), redis_client(proc.host, proc.port, proc.password, 2.0)
    xstore, ystore, astore = StreamStore(xc, CFG), StreamStore(yc, CFG), StreamStore(ac, CFG)
    relay_x, relay_y = relay_cls(xstore, CFG), TurnRelay(ystore, CFG)
    reaper = Reaper(StreamStore(ac, CFG))
    ys = [f"iso-y{i}" for i in range(3)]
    try:
        srcs = [GatedSource(4, 4, delay_s=0.002) for _ in ys]
        hys = [await relay_y.start(y, s, model_id="m", message_id=f"{y}-m") for y, s in zip(ys, srcs)]
        await wait_until(lambda: _all_have(astore, ys, 5), 10, "Y turns in progress")
        before = {y: await _snapshot(astore, y) for y in ys}
        # X: a turn under reset_peer on its producer link, a cancel, an orphan reaped, a trim
        state: dict[str, Any] = {"n": 0, "fault": None}

        def arm(script: str, kinds: tuple[str, ...]) -> None:
            if script != "append":
                return
            if state["fault"] is not None:
                state["fault"].heal()
                state["fault"] = None
                return
            state["n"] += 1
            if state["n"] % 2 == 1:
                state["fault"] = faults.reset_peer(proxy, timeout=0)

        xstore.before_call = arm
        hx = await relay_x.start("iso-x", ScriptedSource(text_turn(10), delay_s=0.002), model_id="m", message_id="x1")
        if (await asyncio.wait_for(hx.wait(), 20)).status != "completed":
            bad.append("setup: X's faulted turn did not complete")
        xstore.before_call = None
        hx2 = await relay_x.start("iso-x", ScriptedSource(text_turn(5), stall_at=2), model_id="m", message_id="x2")
        await relay_x.cancel("iso-x", "x2")
        await asyncio.wait_for(hx2.wait(), 10)
        started = encode_payload("turn_started", {"model_id": "m", "source": "dead", "previous_message_id": None})
        await astore.open_turn("iso-x", "x3", "deadbeef", payload=started, ts_ms=0,
                               superseded_payload=encode_payload("cancelled", {"reason": "superseded"}))
        await astore.active_add("iso-x")
        reaper.start()
        await wait_until(lambda: _status_is(astore, "iso-x", "x3", "interrupted"), CFG.lease_ttl_s + 10, "X's orphan reaped")
        await astore.trim("iso-x", keep_last=1)
        after = {y: await _snapshot(astore, y) for y in ys}
        for y in ys:
            if after[y] != before[y]:
                bad.append(f"INV-28: {y}'s log or records changed while only X was touched")
        for s in srcs:
            s.gate.set()
        for y, h in zip(ys, hys):
            out = await asyncio.wait_for(h.wait(), 20)
            entries = await astore.read_all(y)
            if out.status != "completed":
                bad.append(f"INV-28: {y} ended {out.status}")
            if {e.message_id for e in entries} != {h.message_id} or {e.stream_id for e in entries} != {h.stream_id}:
                bad.append(f"INV-28: {y}'s log holds foreign entries")
            rep = check_stream(entries, records=await astore.records(y))
            bad += [f"INV-28 ({y}): {v}" for v in rep.violations]
    finally:
        await reaper.stop()
        await relay_x.aclose()
        await relay_y.aclose()
        for c in (xc, yc, ac):
            await c.aclose()
    return bad


async def _all_have(store: StreamStore, convs: list[str], n: int) -> bool:
    for c in convs:
        meta = await store.meta(c)
        if meta is None or meta["last_seq"] < n:
            return False
    return True


async def _status_is(store: StreamStore, conv: str, mid: str, status: str) -> bool:
    rec = await store.record(conv, mid)
    return rec is not None and rec["status"] == status


def test_inv28_isolation_with_faults_on_one_conversation(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults):
    _no_violations(run_bounded(_isolation(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults)))


def test_inv28_mutant_cancel_everywhere_is_caught(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults):
    bad = run_bounded(_isolation(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults, M.M28CancelEverywhere))
    assert any("INV-28" in v and "changed" in v for v in bad), bad


# -- INV-29 ----------------------------------------------------------------------------------------
# The task-map mutant is judged while relay 1 produces; a lease that a starved renew cannot lose
# keeps "producer live" true in Redis for that whole phase, whatever the load.
INV29_MUTANT_CFG = CFG.replace(lease_ttl_s=60.0, lease_renew_s=1.0)


async def _status_two_relays(proc: Any, proxy: Any, faults: Any, local_status: bool = False,
                             cfg: StreamConfig = CFG, producing_only: bool = False) -> list[str]:
    bad: list[str] = []
    c1 = redis_client(proxy.listen_host, proxy.listen_port, proc.password)
    c2, ac = redis_client(proc.host, proc.port, proc.password), redis_client(proc.host, proc.port, proc.password, 2.0)
    astore = StreamStore(ac, cfg)
    relay1, relay2 = TurnRelay(StreamStore(c1, cfg), cfg), TurnRelay(StreamStore(c2, cfg), cfg)
    token = "t29"
    runner = web.AppRunner(make_app(StreamStore(c2, cfg), token, relay=relay2))
    await runner.setup()
    lease = allocate_port()
    await web.TCPSite(runner, "127.0.0.1", lease.port).start()
    reaper = Reaper(StreamStore(ac, cfg))

    async def status() -> dict[str, Any]:
        if local_status:
            return {**await _http_status(lease.port, token), **M.m29_status_from_tasks(relay2, "s29")}
        return await _http_status(lease.port, token)

    async def compare(when: str) -> None:
        st = await status()
        holder = await astore.lease_holder("s29")
        meta = await astore.meta("s29")
        rec = await astore.record("s29", meta["current_message_id"])
        truth = {"producer_live": holder is not None, "last_seq": meta["last_seq"], "current_status": rec["status"]}
        got = {k: st.get(k) for k in truth}
        if got != truth:
            bad.append(f"INV-29 ({when}): relay 2's status {got} != Redis {truth}")

    try:
        src = GatedSource(2, 2)
        h = await relay1.start("s29", src, model_id="m")
        await wait_until(lambda: _last_seq_at_least(astore, "s29", h.first_seq + 2), 10, "relay 1's first entries")
        await compare("relay 1 producing")
        if producing_only:
            return bad
        outage = faults.down(proxy)  # relay 1 "dies": it can no longer reach Redis
        await wait_until(lambda: _no_lease(astore, "s29"), cfg.lease_ttl_s + 5, "relay 1's lease to expire")
        await compare("relay 1 dead, before the reaper")
        reaper.start()
        await wait_until(lambda: _status_is(astore, "s29", h.message_id, "interrupted"), 10, "the reaper")
        await compare("after the reaper")
        outage.heal()
        h.task.cancel()
        await asyncio.gather(h.task, return_exceptions=True)
    finally:
        await reaper.stop()
        await relay1.aclose()
        await relay2.aclose()
        await runner.cleanup()
        lease.release()
        for c in (c1, c2, ac):
            await c.aclose()
    return bad


async def _http_status(port: int, token: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/v1/conversations/s29/status",
                         headers={"Authorization": f"Bearer {token}"}) as r:
            return await r.json()


async def _last_seq_at_least(store: StreamStore, conv: str, n: int) -> bool:
    meta = await store.meta(conv)
    return meta is not None and meta["last_seq"] >= n


async def _no_lease(store: StreamStore, conv: str) -> bool:
    return await store.lease_holder(conv) is None


def test_inv29_status_from_redis_across_relays(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults):
    _no_violations(run_bounded(_status_two_relays(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults)))


def test_inv29_mutant_status_from_task_map_is_caught(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults):
    bad = run_bounded(_status_two_relays(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults, local_status=True,
                                         cfg=INV29_MUTANT_CFG, producing_only=True))
    assert any("INV-29 (relay 1 producing)" in v for v in bad), bad


# -- INV-30 ----------------------------------------------------------------------------------------
# DS-30 (docs/stream-design.md#invariants): 100 connect/disconnect cycles, under reset_peer
CYCLES, RESET_CYCLES, BATCH = 100, 10, 10
# the gated turn the consumers follow must outlive any stall of this process: with the CI profile's
# 2 s lease a starved renew lets the reaper end it (correctly), and no consumer then sits in a
# blocking read. Leases are not what INV-30 checks.
INV30_CFG = CFG.replace(lease_ttl_s=60.0, lease_renew_s=1.0)


def _consumer_conns(admin: Any, tag: str) -> list[str]:
    """This run's blocking consumer connections (a mutant run's leaks on the worker's Redis are not ours)."""
    return [c["name"] for c in admin.client_list() if str(c.get("name", "")).startswith(f"cbchaos-consumer:{tag}")]


async def _open_consumers(kit: HttpKit, admin: Any, conv: str, mid: str, client_ids: list[str], *,
                          tag: str, blocking: bool = True) -> list[Any]:
    """SSE consumers of ``mid``, each ready; with ``blocking``, each also in its blocking read."""
    # 10 s of budget for the setup plus the scheduling lag measured meanwhile (tests/stream/sched_lag.py)
    lag = kit_lag(kit)
    conns = [kit.conn(conv, message_id=mid, client_id=cid) for cid in client_ids]
    await wait_within_async(lambda: all(c.ready.is_set() or c.ended.is_set() for c in conns), 10, lag,
                            "the streams to open")
    refused = [(cid, c.status) for cid, c in zip(client_ids, conns) if not c.ready.is_set()]
    if refused:
        raise AssertionError(f"streams not opened (client id, HTTP status): {refused}; {kit.consumers} consumers live")
    if blocking:
        try:
            await wait_within_async(
                lambda: all(f"cbchaos-consumer:{cid}" in _consumer_conns(admin, tag) for cid in client_ids), 10, lag,
                "the blocking reads")
        except AssertionError as exc:
            named = set(_consumer_conns(admin, tag))
            missing = [(cid, c.status, c.ended.is_set(), [f.text or f.data for f in c.frames][-3:])
                       for cid, c in zip(client_ids, conns) if f"cbchaos-consumer:{cid}" not in named]
            raise AssertionError(f"{exc}: not in a blocking read (client id, status, ended, last frames): "
                                 f"{missing}; {kit.consumers} consumers live") from None
    return conns


def _told_unavailable(conn: Any) -> bool:
    return any(f.data and "store_unavailable" in f.data for f in conn.notices)


async def _resources(kit: HttpKit, faults: Any, admin: Any, cycles: int = CYCLES,
                     release_bound_s: float | None = None) -> list[str]:
    """``cycles`` connect/disconnect cycles in concurrent batches of BATCH. The first RESET_CYCLES
    consumers have their Redis link reset under their blocking read before they disconnect; of the
    other batches, odd ones disconnect as soon as the stream is ready (the server may be writing the
    first entries: a loop ended between reads) and even ones once each is in its blocking read. Each
    batch's consumer slots are released before the next batch opens. Then
    BATCH followers end by the stop rule: the gated turn finishes and each gets its terminal."""
    bad: list[str] = []
    src = GatedSource(2, 2)
    hd = await kit.relay.start("r30", src, model_id="m")
    tag = f"cyc{secrets.token_hex(4)}-"
    for b, start in enumerate(range(0, cycles, BATCH)):
        if hd.task is not None and hd.task.done():
            raise AssertionError(f"scenario not realized: the gated turn ended before batch {b}: {hd.task!r}")
        ids = range(start, min(start + BATCH, cycles))
        reset_batch = start < RESET_CYCLES
        # even batches and the reset ones wait until every consumer is in its blocking read
        batch = await _open_consumers(kit, admin, "r30", hd.message_id, [f"{tag}{i}" for i in ids], tag=tag,
                                      blocking=reset_batch or b % 2 == 0)
        reset = [c for i, c in zip(ids, batch) if i < RESET_CYCLES]
        if reset:  # the consumers' Redis links are reset under their blocking reads
            with faults.reset_peer(kit.redis_proxy, timeout=0):
                await wait_until(lambda: all(_told_unavailable(c) for c in reset), 15,
                                 "the reset to hit every consumer")
        for c in batch:
            await c.close()
        # the server frees a closed client's slot when it notices: at its next heartbeat write, then a
        # cleanup bounded by block_ms + 2 s. The next batch opens only then, so closed clients never
        # pile up to max_consumers (refused with 503 too_many_consumers on a loaded machine).
        try:
            await wait_within_async(lambda: kit.consumers == 0, kit.cfg.heartbeat_s + kit.cfg.block_ms / 1000 + 2,
                                    kit_lag(kit), f"batch {b}'s consumer slots to be released")
        except AssertionError as exc:
            return bad + [f"INV-30: {exc}; {kit.consumers} consumers live"]
    # followers end the normal way: in their blocking reads when the turn finishes, they get its
    # terminal and the server ends each stream (a loop ended by its stop rule, between reads)
    followers = await _open_consumers(kit, admin, "r30", hd.message_id, [f"{tag}f{i}" for i in range(BATCH)],
                                      tag=tag)
    src.gate.set()
    await asyncio.wait_for(hd.wait(), 10)
    try:
        await wait_until(lambda: all(c.ended.is_set() for c in followers), 10, "every follower's stream to end")
    except AssertionError:
        open_ = [(i, [e.kind for e in c.envelopes][-2:], [f.text for f in c.frames if f.kind == "comment"][-2:])
                 for i, c in enumerate(followers) if not c.ended.is_set()]
        raise AssertionError(f"followers still open after the terminal (index, last kinds, last comments): {open_}")
    for c in followers:
        await c.close()
    try:
        await wait_until(lambda: kit.consumers == 0 and not _consumer_conns(admin, tag),
                         release_bound_s or 3 * kit.cfg.heartbeat_s + 10, "every consumer connection to be released")
    except AssertionError:
        bad.append(f"INV-30: after {cycles} cycles and {BATCH} followers {kit.consumers} consumers live, "
                   f"{len(_consumer_conns(admin, tag))} cbchaos-consumer:* connections in CLIENT LIST: "
                   f"{_consumer_conns(admin, tag)[:5]}")
    for i in range(20):  # 20 turns: finished conversations leave `active` and hold no lease
        conv = f"r30-{i % 4}"
        await (await kit.relay.start(conv, ScriptedSource(text_turn(2)), model_id="m", message_id=f"t{i}")).wait()
    if await kit.admin.zrange(kit.astore.active_key, 0, -1):
        bad.append("INV-30: finished conversations left in `active`")
    for i in range(4):
        if await kit.astore.lease_holder(f"r30-{i}") is not None:
            bad.append(f"INV-30: finished conversation r30-{i} holds a lease")
    if kit.relay._tasks:
        bad.append(f"INV-30: {len(kit.relay._tasks)} relay tasks not awaited")
    return bad


def test_inv30_bounded_resources(run_in_kit, cbchaos_faults, cbchaos_redis_admin):
    _no_violations(run_in_kit(_resources, INV30_CFG, cbchaos_faults, cbchaos_redis_admin, timeout=120))


def test_inv30_mutant_leaky_read_loop_is_caught(run_in_kit, cbchaos_faults, cbchaos_redis_admin):
    async def leaky(kit: HttpKit) -> list[str]:
        # a leaked connection never goes away: a short release bound still catches it
        return await _resources(kit, cbchaos_faults, cbchaos_redis_admin, cycles=RESET_CYCLES + 2 * BATCH,
                                release_bound_s=3 * CFG.heartbeat_s + 2)
    bad = run_in_kit(leaky, INV30_CFG, timeout=120,
                     kit={"loop_class": M.M30LeakyReadLoop, "after_app": M.close_leaked})
    assert any("cbchaos-consumer:* connections" in v for v in bad), bad


async def _reset_under_blocking_reads(kit: HttpKit, faults: Any, admin: Any) -> list[str]:
    """Consumers in their blocking reads have their Redis link reset: each sends its one
    ``store_unavailable`` notice within T_live (``deliver_bound_s``) of the fault. The reset lands
    when the next reply passes the toxic (after ``block_ms``, as in Toxiproxy); redis-py's own
    retries on the blocking client (3, with backoff) used to hide it for about 4.5 s."""
    hd = await kit.relay.start("rb", GatedSource(2, 2), model_id="m")
    tag = f"rb{secrets.token_hex(4)}-"
    batch = await _open_consumers(kit, admin, "rb", hd.message_id, [f"{tag}{i}" for i in range(BATCH)], tag=tag)
    t0 = time.monotonic()
    late: dict[int, float] = {}
    with faults.reset_peer(kit.redis_proxy, timeout=0):
        def reported() -> bool:
            for i, c in enumerate(batch):
                if i not in late and _told_unavailable(c):
                    late[i] = time.monotonic() - t0
            return len(late) == BATCH
        try:
            await wait_until(reported, CFG.deliver_bound_s + 10, "the reset to hit every consumer")
        except AssertionError:
            pass  # the late and missing ones are reported below
    for c in batch:
        await c.close()
    return [f"consumer {i}: store_unavailable {late.get(i, 'never')} s after the reset, "
            f"T_live is {CFG.deliver_bound_s} s" for i in range(BATCH) if late.get(i, math.inf) > CFG.deliver_bound_s]


def test_reset_under_blocking_read_is_reported_within_t_live(run_in_kit, cbchaos_faults, cbchaos_redis_admin):
    _no_violations(run_in_kit(_reset_under_blocking_reads, CFG, cbchaos_faults, cbchaos_redis_admin, timeout=60))
