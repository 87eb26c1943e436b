"""Core producer/consumer semantics against real Redis (direct and through the fault proxies)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.stream.stream_helpers import client_for
from pytest_cbchaos.stream import LogReader, ScriptedSource, StreamConfig, StreamStore, TurnRelay, check_stream, fold
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.reaper import Reaper
from pytest_cbchaos.stream.relay import ConversationBusy
from pytest_cbchaos.stream.sources import SourceEvent, SourceFailure, text_turn

CFG = StreamConfig.ci()


async def _env(proc, proxy=None):
    client = client_for(proc, proxy)
    store = StreamStore(client, CFG)
    return client, store, TurnRelay(store, CFG)


async def _check_all(store, conv, **kw):
    entries = await store.read_all(conv)
    meta = await store.meta(conv)
    recs = await store.records(conv)
    reader = LogReader(store)

    def replay(cursor, mid):  # evaluated synchronously inside the check via a pre-computed map
        return replays[(cursor, mid)]

    replays = {}
    for mid, rec in recs.items():
        if rec.get("terminal_kind") == "error":
            for c in {0, rec["first_seq"] - 1, rec["first_seq"], rec["terminal_seq"] - 1}:
                replays[(c, mid)] = await reader.collect(conv, message_id=mid, after_seq=c)
    return check_stream(entries, floor_seq=meta["floor_seq"], last_seq=meta["last_seq"], records=recs,
                        replay=replay, **kw)


def test_turn_complete_and_replay(cbchaos_redis_proc, run):
    async def main():
        client, store, relay = await _env(cbchaos_redis_proc)
        h = await relay.start("c1", ScriptedSource(text_turn(5)), model_id="m")
        assert h.first_seq == 1 and h.after_seq == 0
        out = await h.wait()
        assert out.status == "completed", out
        envs = await LogReader(store).collect("c1", after_seq=0)
        assert [e.kind for e in envs][0] == "turn_started" and envs[-1].kind == "complete"
        view = fold(envs)
        assert view.status == "completed" and view.text == "".join(f"w{i} " for i in range(5))
        rec = await store.record("c1", h.message_id)
        assert rec["status"] == "completed" and rec["last_seq"] == rec["terminal_seq"] == envs[-1].seq
        assert rec == {k: v for k, v in (await store.record("c1", h.message_id)).items()}
        rebuilt = await store.rebuild_record("c1", h.message_id)
        for k, v in rebuilt.items():
            assert rec[k] == v
        rep = await _check_all(store, "c1", emissions=relay.emissions)
        assert rep.ok, rep
        assert await store.lease_holder("c1") is None
        assert await store.redis.zscore(store.active_key, "c1") is None
        await client.aclose()
    run(main())


def test_bootstrap_error_rule_each_stage(cbchaos_redis_proc, run):
    async def main():
        client, store, relay = await _env(cbchaos_redis_proc)
        for i, stage in enumerate(("model_config", "session", "transport")):
            src = ScriptedSource(text_turn(2), fail_stage={stage: RuntimeError(f"{stage} broke api_key=zzz")})
            h = await relay.start("cb", src, model_id="m", message_id=f"m{i}")
            out = await h.wait()
            assert out.status == "failed" and isinstance(out.error, RuntimeError)
            rec = await store.record("cb", h.message_id)
            assert rec["status"] == "failed" and rec["error_code"] == f"bootstrap.{stage}"
            assert rec["last_seq"] == rec["terminal_seq"]
            envs = await LogReader(store).collect("cb", message_id=h.message_id, after_seq=h.after_seq)
            assert [e.kind for e in envs] == ["turn_started", "error"]
            assert envs[-1].payload["stage"] == stage and envs[-1].payload["partial"] is False
        # a hang in a stage is bounded by bootstrap_timeout_s
        fast = StreamConfig.ci(bootstrap_timeout_s=0.3)
        r2 = TurnRelay(store, fast)
        h = await r2.start("cb", ScriptedSource(text_turn(1), fail_stage={"transport": 5.0}), model_id="m", message_id="m9")
        out = await h.wait()
        assert out.status == "failed"
        assert (await store.record("cb", "m9"))["error_code"] == "bootstrap.transport"
        rep = await _check_all(store, "cb")
        assert rep.ok, rep
        await client.aclose()
    run(main())


def test_mid_stream_error_keeps_partial_content(cbchaos_redis_proc, run):
    async def main():
        client, store, relay = await _env(cbchaos_redis_proc)
        src = ScriptedSource(text_turn(6), fail_at={4: SourceFailure("provider 500", "source.provider_error")})
        h = await relay.start("c2", src, model_id="m")
        out = await h.wait()
        assert out.status == "failed"
        envs = await LogReader(store).collect("c2", after_seq=0)
        view = fold(envs)
        assert view.status == "failed" and view.text == "w0 w1 w2 w3 " and view.error["partial"] is True
        assert view.error["code"] == "source.provider_error"
        assert (await _check_all(store, "c2")).ok
        await client.aclose()
    run(main())


def test_empty_incomplete_and_fast_turns(cbchaos_redis_proc, run):
    async def main():
        client, store, relay = await _env(cbchaos_redis_proc)
        h = await relay.start("c3", ScriptedSource([]), model_id="m", message_id="a")
        assert (await h.wait()).status == "failed"
        assert (await store.record("c3", "a"))["error_code"] == "source.empty"
        h = await relay.start("c3", ScriptedSource(text_turn(2)[:2]), model_id="m", message_id="b")
        await h.wait()
        assert (await store.record("c3", "b"))["error_code"] == "source.incomplete"
        # INV-20: 1-3 content events completing within flush_interval_ms -> complete, never empty
        for n in (1, 2, 3):
            h = await relay.start("c3", ScriptedSource(text_turn(n)[:n] + [text_turn(n)[-1]]), model_id="m",
                                  message_id=f"f{n}")
            out = await h.wait()
            assert out.status == "completed", out
        assert (await _check_all(store, "c3")).ok
        await client.aclose()
    run(main())


def test_busy_double_submit_and_superseded(cbchaos_redis_proc, run):
    async def main():
        client, store, relay = await _env(cbchaos_redis_proc)
        src = ScriptedSource(text_turn(3), stall_at=1)
        h = await relay.start("c4", src, model_id="m", message_id="x")
        with pytest.raises(ConversationBusy):
            await relay.start("c4", ScriptedSource(text_turn(1)), model_id="m", message_id="y")
        dup = await relay.start("c4", ScriptedSource(text_turn(1)), model_id="m", message_id="x")
        assert dup.duplicate and dup.first_seq == h.first_seq
        await relay.cancel("c4", "x")
        out = await h.wait()
        assert out.status == "interrupted" and out.terminal_kind == "cancelled"
        envs = await store.read_all("c4")
        assert sum(1 for e in envs if e.kind == "turn_started") == 1
        assert envs[-1].payload == {"reason": "user"}
        assert (await _check_all(store, "c4")).ok
        await client.aclose()
    run(main())


def test_cancel_without_producer_and_reaper(cbchaos_redis_proc, run):
    async def main():
        client, store, relay = await _env(cbchaos_redis_proc)
        # a producer that dies: simulate by opening a turn with a lease that expires
        h = await relay.start("c5", ScriptedSource(text_turn(3), stall_at=1), model_id="m", message_id="x")
        h.task.cancel()  # relay shutdown -> cancelled{relay_shutdown}
        out = await asyncio.gather(h.task, return_exceptions=True)
        envs = await store.read_all("c5")
        assert envs[-1].kind == "cancelled" and envs[-1].payload["reason"] == "relay_shutdown"
        # orphan: open a turn through the script directly (no producer task) -> reaper ends it
        from pytest_cbchaos.stream.envelope import encode_payload
        rep = await store.open_turn("c6", "o1", "deadbeef", payload=encode_payload(
            "turn_started", {"model_id": "m", "source": "x", "previous_message_id": None}),
            superseded_payload=encode_payload("cancelled", {"reason": "superseded"}), ts_ms=0)
        assert rep.status == "OK"
        await store.active_add("c6")
        t0 = time.monotonic()
        async with Reaper(store):  # reaped (record terminal), then dropped from `active` (a second call)
            while (await store.record("c6", "o1"))["status"] == "in_progress" or \
                    await store.redis.zscore(store.active_key, "c6") is not None:
                assert time.monotonic() - t0 < CFG.lease_ttl_s + CFG.reaper_interval_s + CFG.deliver_bound_s
                await asyncio.sleep(0.05)
        envs = await store.read_all("c6")
        assert envs[-1].payload == {"reason": "producer_lost"} and envs[-1].stream_id.startswith("reaper:")
        # cancel with no lease for a finished message: already terminal, nothing written
        assert await relay.cancel("c6", "o1") == "ALREADY_TERMINAL"
        assert len(await store.read_all("c6")) == 2
        await client.aclose()
    run(main())


def test_fencing_paused_producer_writes_nothing(cbchaos_redis_proc, run):
    async def main():
        cfg = StreamConfig.ci()
        client = client_for(cbchaos_redis_proc)
        store = StreamStore(client, cfg)
        relay = TurnRelay(store, cfg)
        gate = asyncio.Event()

        class Paused(ScriptedSource):
            async def __aiter__(self):
                yield SourceEvent("text_delta", {"part_id": "p", "text": "a"})
                await gate.wait()
                yield SourceEvent("text_delta", {"part_id": "p", "text": "b"})
                yield SourceEvent("complete", {"finish_reason": "stop", "usage": {}})

        h = await relay.start("c7", Paused([]), model_id="m")
        # simulate a paused process: stop lease renewal by deleting the lease (expiry), then reap
        await asyncio.sleep(0.1)
        await client.delete(store.keys("c7")[4])
        assert await Reaper(store).reap_conversation("c7") == 1
        gate.set()
        out = await h.wait()
        assert out.stop_reason in ("FENCED",) and out.superseded_by.startswith("reaper:")
        envs = await store.read_all("c7")
        assert [e.kind for e in envs][-1] == "cancelled" and sum(e.is_terminal for e in envs) == 1
        assert not any(e.payload.get("text") == "b" for e in envs if e.kind == "text_delta")
        await client.aclose()
    run(main())


def test_trim_safety_and_follow(cbchaos_redis_proc, run):
    async def main():
        client, store, relay = await _env(cbchaos_redis_proc)
        mids = []
        for i in range(3):
            h = await relay.start("c8", ScriptedSource(text_turn(2)), model_id="m", message_id=f"t{i}",
                                  previous_message_id=mids[-1] if mids else None)
            await h.wait()
            mids.append(h.message_id)
        # old terminals don't stop a replay early (INV-8)
        envs = await LogReader(store).collect("c8", message_id="t2", after_seq=0)
        assert envs[-1].message_id == "t2" and envs[-1].is_terminal and envs[0].seq == 1
        # trim keeps whole messages
        last_before = (await store.meta("c8"))["last_seq"]
        r = await store.trim("c8", keep_last=1)
        meta = await store.meta("c8")
        rec2 = await store.record("c8", "t2")
        assert r.status == "OK" and meta["floor_seq"] == rec2["first_seq"] - 1 and meta["last_seq"] == last_before
        assert await store.record("c8", "t0") is None
        from pytest_cbchaos.stream.reader import StreamConnectError
        with pytest.raises(StreamConnectError) as ei:
            await LogReader(store).collect("c8", message_id="t2", after_seq=0)
        assert ei.value.status == 410 and ei.value.code == "truncated"
        # refuses to cut into an in-progress message
        h = await relay.start("c8", ScriptedSource(text_turn(2), stall_at=1), model_id="m", message_id="t3")
        r = await store.trim("c8", keep_last=0)
        assert r.status == "REFUSED"
        # follow across turns: a follower on t3 continues into t4
        got = []

        async def follower():
            async for e in LogReader(store).follow("c8", message_id="t3", after_seq=h.after_seq, follow=True):
                got.append(e)
                if e.message_id == "t4" and e.is_terminal:
                    return
        ft = asyncio.create_task(follower())
        await relay.cancel("c8", "t3")
        await h.wait()
        h4 = await relay.start("c8", ScriptedSource(text_turn(1)), model_id="m", message_id="t4", previous_message_id="t3")
        await h4.wait()
        await asyncio.wait_for(ft, 5)
        assert [e.seq for e in got] == list(range(h.first_seq, got[-1].seq + 1))
        rep = await _check_all(store, "c8")
        assert rep.ok, rep
        await client.aclose()
    run(main())
