"""The checker must catch every shipped mutant (and pass the correct implementation)."""

from __future__ import annotations

import asyncio

from stream_helpers import client_for
from pytest_cbchaos.stream import ScriptedSource, StreamConfig, StreamStore, TurnRelay, check_stream
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.envelope import encode_payload
from pytest_cbchaos.stream.reader import ReadLoop
from pytest_cbchaos.stream.reaper import Reaper
from pytest_cbchaos.stream.sources import SourceEvent, text_turn
from pytest_cbchaos.testing import stream_mutants as M

CFG = StreamConfig.ci()


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
        store = StreamStore(c, StreamConfig.ci(flush_interval_ms=1000))
        fast = [SourceEvent("text_delta", {"part_id": "p", "text": "hi"})]  # ends within flush_interval, no terminal
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
