"""The checker must catch every shipped mutant (and pass the correct implementation)."""

from __future__ import annotations

import asyncio

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from tests.stream.stream_helpers import client_for
from pytest_cbchaos.stream import ScriptedSource, StreamConfig, StreamStore, TurnRelay, check_stream, fold
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.envelope import encode_payload
from pytest_cbchaos.stream.reader import Notice, ReadLoop
from pytest_cbchaos.stream.reaper import Reaper
from pytest_cbchaos.stream.sources import SourceEvent, text_turn
from pytest_cbchaos.testing import stream_mutants as M

CFG = StreamConfig.ci()
NEVER_FLUSH_MS = 600_000  # no timed flush within a test: only the terminal (or the end) flushes


async def _check(store, conv, **kw):
    meta = await store.meta(conv)
    return check_stream(await store.read_all(conv), floor_seq=meta["floor_seq"] if meta else 0,
                        records=await store.records(conv), **kw)


def test_m3_stop_on_any_terminal_is_caught(cbchaos_redis_proc, run):
    async def main():
        c = client_for(cbchaos_redis_proc)
        store = StreamStore(c, CFG)
        relay = TurnRelay(store, CFG)
        for i in range(3):
            await (await relay.start("m3", ScriptedSource(text_turn(2)), model_id="m", message_id=f"t{i}")).wait()
        for cls, want_ok in ((ReadLoop, True), (M.M3StopOnAnyTerminal, False)):
            loop = cls(store, "m3", after_seq=0, message_id="t2")
            await loop.connect()
            d = Delivery(0, name=cls.__name__, target="t2")
            async for item in loop.items():
                if hasattr(item, "seq"):
                    d.add(item, 0.0)
            await loop.aclose()
            rep = await _check(store, "m3", deliveries=[d])
            assert rep.ok is want_ok, rep
        await c.aclose()
    run(main())


def test_m5_plain_xadd_retried_is_caught(cbchaos_redis_proc, stream_proxies, run):
    async def main():
        c = client_for(cbchaos_redis_proc, stream_proxies["producer"], retry=None)
        store = StreamStore(c, CFG)
        prod = M.M5PlainXaddProducer(store)
        stream_proxies["producer"].lose_next_reply()  # applied, reply lost -> the retry duplicates
        evs = [("turn_started", "control", encode_payload("turn_started", {"model_id": "m", "source": "x", "previous_message_id": None})),
               ("text_delta", "content", encode_payload("text_delta", {"part_id": "p", "text": "a"})),
               ("complete", "terminal", encode_payload("complete", {"finish_reason": "stop", "usage": {}}))]
        await prod.write("m5", "x", "sid", evs)
        rep = check_stream(await store.read_all("m5"), emissions=prod.emissions)
        assert not rep.ok and any("INV-14" in v or "INV-10" in v for v in rep.violations), rep
        await c.aclose()
    run(main())


def test_m11_empty_check_on_flushed_only_is_caught(cbchaos_redis_proc, run):
    async def main():
        c = client_for(cbchaos_redis_proc)
        # a flush interval no run reaches: the content is never flushed before the source ends, so
        # the mutant's flushed-only check sees none whatever the load
        store = StreamStore(c, StreamConfig.ci(flush_interval_ms=NEVER_FLUSH_MS))
        fast = [SourceEvent("text_delta", {"part_id": "p", "text": "hi"})]  # ends before any flush, no terminal
        good = await (await TurnRelay(store).start("m11", ScriptedSource(fast), model_id="m", message_id="a")).wait()
        bad_relay = M.m11_flushed_only_empty_check(TurnRelay(store))
        await (await bad_relay.start("m11", ScriptedSource(fast), model_id="m", message_id="b")).wait()
        assert (await store.record("m11", "a"))["error_code"] == "source.incomplete"  # correct: content counted
        assert (await store.record("m11", "b"))["error_code"] == "source.empty"  # the mutant: INV-20 broken
        await c.aclose()
    run(main())


def test_m13_no_fencing_is_caught(cbchaos_redis_proc, run):
    async def main():
        c = client_for(cbchaos_redis_proc)
        for store_cls, want_ok in ((StreamStore, True), (M.M13NoFencingStore, False)):
            store = store_cls(c, CFG)
            conv = f"m13{store_cls.__name__}"
            gate = asyncio.Event()

            class Paused(ScriptedSource):
                async def __aiter__(self):
                    yield SourceEvent("text_delta", {"part_id": "p", "text": "a"})
                    await gate.wait()
                    yield SourceEvent("complete", {"finish_reason": "stop", "usage": {}})

            relay = TurnRelay(store, StreamConfig.ci(lease_renew_s=0.6, lease_ttl_s=2.0))
            h = await relay.start(conv, Paused([]), model_id="m")
            await asyncio.sleep(0.1)
            await c.delete(store.keys(conv)[4])  # the lease expired (producer paused)
            await Reaper(StreamStore(c, CFG)).reap_conversation(conv)
            gate.set()
            await h.wait()
            rep = await _check(store, conv)
            assert rep.ok is want_ok, rep
        await c.aclose()
    run(main())


def test_m6_status_only_cancel_is_caught(cbchaos_redis_proc, run):
    async def main():
        c = client_for(cbchaos_redis_proc)
        store = StreamStore(c, CFG)
        relay = TurnRelay(store, CFG)
        h = await relay.start("m6", ScriptedSource(text_turn(3), stall_at=1), model_id="m")
        await asyncio.sleep(0.05)
        await M.m6_status_only_cancel(store, "m6", h.message_id)
        h.task.cancel()
        await asyncio.gather(h.task, return_exceptions=True)
        rep = await _check(store, "m6")
        assert not rep.ok and any("INV-3" in v or "INV-12" in v for v in rep.violations), rep
        await c.aclose()
    run(main())


def test_m8_cursor_before_delivery_is_caught(cbchaos_redis_proc, run):
    async def main():
        c = client_for(cbchaos_redis_proc)
        store = StreamStore(c, CFG)
        h = await TurnRelay(store, CFG).start("m8", ScriptedSource(text_turn(6)), model_id="m")
        await h.wait()
        loop = ReadLoop(store, "m8", after_seq=0, message_id=h.message_id)
        await loop.connect()
        got = await M.m8_cursor_before_delivery(loop, crash_at_seq=4)
        d = Delivery(0, name="m8", target=h.message_id)
        for e in got:
            d.add(e, 0.0)
        rep = await _check(store, "m8", deliveries=[d])
        assert not rep.ok and any("INV-1" in v for v in rep.violations), rep
        await c.aclose()
    run(main())


def test_m7_no_reaper_is_caught(cbchaos_redis_proc, run):
    """A producer that died right after `open_turn` (lease left to expire): the reaper closes the
    message with `cancelled{producer_lost}`; without one it stays `in_progress` (INV-15/3)."""
    async def main():
        c = client_for(cbchaos_redis_proc)
        cfg = StreamConfig.ci(lease_ttl_s=0.6, lease_renew_s=0.15, reaper_interval_s=0.25)
        store = StreamStore(c, cfg)
        sup = encode_payload("cancelled", {"reason": "superseded"})
        for conv, reaper_cls, want_ok in (("m7ok", Reaper, True), ("m7bad", M.M7NoReaper, False)):
            started = encode_payload("turn_started", {"model_id": "m", "source": "dead", "previous_message_id": None})
            await store.open_turn(conv, "dead", "sid" + conv, payload=started, superseded_payload=sup, ts_ms=0)
            await store.active_add(conv)
            deadline = asyncio.get_running_loop().time() + 5
            while (await store.lease_holder(conv) is not None
                   or not await store.active_due()):  # lease expired and the deadline passed
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            await reaper_cls(store).reap_once()
            rep = await _check(store, conv)
            rec = await store.record(conv, "dead")
            assert rep.ok is want_ok, rep
            if want_ok:
                assert rec["status"] == "interrupted" and rec["terminal_kind"] == "cancelled"
            else:
                assert rec["status"] == "in_progress"  # an orphan past T_orphan: INV-15
                assert any("INV-3" in v and "no terminal" in v for v in rep.violations), rep
        await c.aclose()
    run(main())


def test_m10_maxlen_trim_is_caught(cbchaos_redis_proc, run):
    """MAXLEN cuts into the live message and leaves `floor_seq` alone: a silent hole (INV-26)."""
    async def main():
        c = client_for(cbchaos_redis_proc)
        store = StreamStore(c, CFG)
        relay = TurnRelay(store, CFG)
        for conv, mutant in (("m10ok", False), ("m10bad", True)):
            await (await relay.start(conv, ScriptedSource(text_turn(4)), model_id="m", message_id="old")).wait()
            live = await relay.start(conv, ScriptedSource(text_turn(6), stall_at=4), model_id="m", message_id="live")
            deadline = asyncio.get_running_loop().time() + 5
            while (await store.record(conv, "live"))["last_seq"] < live.first_seq + 3:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            if mutant:
                assert await M.m10_maxlen_trim(store, conv, 2) > 0
            else:
                reply = await store.trim(conv, keep_last=1)
                assert reply.status == "OK", reply
            rep = await _check(store, conv, require_finished=False)
            rec = await store.record(conv, "live")
            assert rec["status"] == "in_progress"
            if mutant:
                assert not rep.ok and any("INV-10" in v or "INV-11" in v for v in rep.violations), rep
            else:
                assert rep.ok, rep
                assert (await store.meta(conv))["floor_seq"] == live.first_seq - 1
            await relay.cancel(conv, "live")
            await live.wait()
        await c.aclose()
    run(main())


def test_m4_consumer_writes_error_is_caught(cbchaos_redis_proc, stream_proxies, run):
    """The consumer's Redis link is reset mid-stream; the producer is healthy. Correct consumer:
    only the producer wrote, the turn completes. M4 persists an `error`: INV-7 is broken."""
    async def main():
        direct = client_for(cbchaos_redis_proc)
        cons = client_for(cbchaos_redis_proc, stream_proxies["consumer"], retry=Retry(NoBackoff(), 0))
        pstore, cstore = StreamStore(direct, CFG), StreamStore(cons, CFG)
        relay = TurnRelay(pstore, CFG)
        for conv, mutant in (("m4ok", False), ("m4bad", True)):
            h = await relay.start(conv, ScriptedSource(text_turn(20), delay_s=0.01), model_id="m")
            kw = {"writer": direct} if mutant else {}
            loop = (M.M4ErrorOnStoreFailure if mutant else ReadLoop)(cstore, conv, after_seq=h.after_seq,
                                                                    message_id=h.message_id, **kw)
            await loop.connect()
            reset, notices = False, []
            async for item in loop.items():
                if isinstance(item, Notice):
                    notices.append(item.code)
                if hasattr(item, "seq") and item.seq == h.first_seq + 2 and not reset:
                    reset = True
                    stream_proxies["consumer"].reset_all()
            await loop.aclose()
            assert "store_unavailable" in notices  # the fault did hit the consumer
            out = await asyncio.wait_for(h.wait(), 10)
            entries = await pstore.read_all(conv)
            writers = {e.stream_id for e in entries}
            status = (await pstore.record(conv, h.message_id))["status"]
            inv7_ok = writers == {h.stream_id} and status == "completed"
            assert inv7_ok is (not mutant), (writers, status, out)
            if mutant:
                assert status == "failed" and out.stop_reason == "CLOSED", out
        await direct.aclose()
        await cons.aclose()
    run(main())


def test_m12_payload_by_reference_is_caught(cbchaos_redis_proc, run):
    """A source that mutates each payload object after emitting it: bytes frozen at emission
    (correct) keep the stored log equal to what was emitted; M12 stores the mutated object (INV-9)."""
    async def main():
        c = client_for(cbchaos_redis_proc)
        cfg = StreamConfig.ci(flush_interval_ms=NEVER_FLUSH_MS)  # content stays buffered until the terminal
        store = StreamStore(c, cfg)
        for conv, mutant in (("m12ok", False), ("m12bad", True)):
            relay = TurnRelay(store, cfg)
            if mutant:
                M.m12_payload_by_reference(relay)
            runs: list = []

            class Probe(relay.run_class):  # records the run so the source can wait for acceptance
                def __init__(self, *a, **kw):
                    super().__init__(*a, **kw)
                    runs.append(self)

            relay.run_class = Probe
            emitted: list[bytes] = []

            class Mutating(ScriptedSource):
                async def __aiter__(self):
                    parts = [{"part_id": "p", "text": f"w{i}"} for i in range(3)]
                    for p in parts:
                        emitted.append(encode_payload("text_delta", p))
                        yield SourceEvent("text_delta", p)
                    deadline = asyncio.get_running_loop().time() + 5
                    while not runs or runs[0].content_emitted < len(parts):
                        assert asyncio.get_running_loop().time() < deadline
                        await asyncio.sleep(0.005)
                    for p in parts:
                        p["text"] = "MUTATED"  # the source reuses its part objects
                    yield SourceEvent("complete", {"finish_reason": "stop", "usage": {}})

            h = await relay.start(conv, Mutating([]), model_id="m")
            assert (await h.wait()).status == "completed"
            content = iter(emitted)
            oracle = [(sid, step, kind, next(content) if kind == "text_delta" else data)
                      for sid, step, kind, data in relay.emissions]
            rep = await _check(store, conv, emissions=oracle)
            assert rep.ok is (not mutant), rep
            if mutant:
                assert "MUTATED" in fold(await store.read_all(conv)).text
        await c.aclose()
    run(main())


class _IdleM30(M.M30LeakyReadLoop):
    """M30 on an empty stream, wake-up checks off: every read is a blocking read that comes back empty."""

    async def _wakeup_checks(self) -> Notice | None:
        return None


async def _consumer_conns(admin, name: str) -> list[str]:
    return [str(c.get("name")) for c in await admin.client_list() if str(c.get("name")) == name]


async def _m30_closed_mid_read(proc) -> tuple[bool, list[str], list[str]]:
    """Close an M30 loop during its blocking read (as the SSE handler does when a consumer ends): did the
    loop end, which of its connections were left open, and which were still open after close_leaked."""
    client, admin = client_for(proc), client_for(proc)
    loop = _IdleM30(StreamStore(client, CFG), "m30-idle")
    name = f"cbchaos-consumer:{loop.token}"

    async def drain() -> None:
        async for _ in loop.items():
            pass

    task = asyncio.get_running_loop().create_task(drain())
    try:
        while loop._blocking is None:  # set just before its XREAD is sent, in the same step
            await asyncio.sleep(0.01)
        await loop.aclose()
        done, _ = await asyncio.wait({task}, timeout=CFG.block_ms / 1000 + 10)
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=5)
    leaked = await _consumer_conns(admin, name)
    await M.close_leaked()
    left = await _consumer_conns(admin, name)
    await client.aclose()
    await admin.aclose()
    return task in done, leaked, left


def test_m30_leaks_only_at_close_and_its_teardown_closes_every_connection(cbchaos_redis_proc, run):
    """M30 must break one thing: the close. A loop that read on after its close opened a connection
    no teardown knew of; its task dropped it unclosed, and the garbage collector reported it
    ("Unclosed client session") in whatever test of the worker ran next."""
    ended, leaked, left = run(_m30_closed_mid_read(cbchaos_redis_proc))
    assert ended, "the M30 loop read on after its close"
    assert leaked, "M30 closed its connection: it is no longer the leak INV-30 must catch"
    assert left == [], f"connections of M30 still open after close_leaked: {left}"
