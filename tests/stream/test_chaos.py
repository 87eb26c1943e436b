"""Chaos: real Redis behind `redis-producer` / `redis-consumer` fault proxies, the SSE endpoint,
and the stream checker over every recorded stream."""

from __future__ import annotations

import asyncio
import os
import random
import time

import aiohttp
import pytest

from tests.stream.stream_harness import Harness
from pytest_cbchaos.stream import LogReader, ScriptedSource, StreamConfig, check_stream, fold
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.client import ConsumerBusy, StreamClient
from pytest_cbchaos.stream.sources import SourceFailure, text_turn
from pytest_cbchaos.stream.store import StoreUnavailable

CFG = StreamConfig.ci()
LIVE_BOUND_S = 5.0  # issue acceptance: every live consumer receives its terminal within 5 s


async def _full_check(h: Harness, conv: str, deliveries=(), written=None):
    entries = await h.astore.read_all(conv)
    meta = await h.astore.meta(conv)
    return check_stream(entries, floor_seq=meta["floor_seq"], last_seq=meta["last_seq"],
                        records=await h.astore.records(conv), deliveries=deliveries,
                        emissions=h.relay.emissions, terminal_written_at=written, live_bound_s=LIVE_BOUND_S)


async def _consume(h: Harness, conv: str, mid: str, after: int, name: str, on_event=None) -> Delivery:
    d = Delivery(after, name=name, target=mid)
    client = StreamClient(h.url, h.token, name, CFG)
    h.clients[name] = (client, d)
    async for env in client.follow(conv, mid, after):
        d.add(env, time.monotonic())
        if on_event:
            await on_event(env, d)
    return d


def test_sse_endpoint_codes_and_resume(cbchaos_redis_proc, stream_proxies, run):
    async def main():
        async with Harness(cbchaos_redis_proc, stream_proxies, CFG) as h:
            hd = await h.relay.start("s1", ScriptedSource(text_turn(8), delay_s=0.01), model_id="m")
            await hd.wait()
            rec = await h.astore.record("s1", hd.message_id)
            async with aiohttp.ClientSession() as s:
                auth = {"Authorization": f"Bearer {h.token}"}
                base = f"{h.url}/v1/conversations/s1"
                async with s.get(f"{base}/stream") as r:
                    assert r.status == 401
                async with s.get(f"{base}/stream", params={"after_seq": "x"}, headers=auth) as r:
                    assert r.status == 400
                async with s.get(f"{base}/stream", params={"after_seq": str(rec["terminal_seq"])}, headers=auth) as r:
                    assert r.status == 204 and r.headers["X-Cbchaos-Terminal-Kind"] == "complete"
                async with s.get(f"{base}/stream", params={"after_seq": "999"}, headers=auth) as r:
                    assert r.status == 409 and (await r.json())["code"] == "cursor_ahead"
                async with s.get(f"{base}/stream", params={"epoch": "0" * 16}, headers=auth) as r:
                    assert r.status == 409 and (await r.json())["code"] == "epoch_changed"
                async with s.get(f"{h.url}/v1/conversations/nope/stream", headers=auth) as r:
                    assert r.status == 404
                async with s.get(f"{base}/status", headers=auth) as r:
                    st = await r.json()
                    assert st["last_seq"] == rec["terminal_seq"] and st["producer_live"] is False
                    assert st["current_status"] == "completed"
                # max(after_seq, Last-Event-ID), both directions; an invalid Last-Event-ID is ignored
                for after, lei, want in (("3", "5", 6), ("5", "3", 6), ("4", "junk", 5)):
                    async with s.get(f"{base}/stream", params={"after_seq": after},
                                     headers={**auth, "Last-Event-ID": lei}) as r:
                        body = (await r.read()).decode()
                        ids = [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")]
                        assert ids[0] == want and ids[-1] == rec["terminal_seq"]
                        assert body.startswith("retry: 1000\n: ready epoch=")
                async with s.get(f"{base}/events", params={"after_seq": "0"}, headers=auth) as r:
                    assert len(await r.json()) == rec["terminal_seq"]
            # resume from every cursor reaches the terminal (INV-6)
            for cursor in range(0, rec["terminal_seq"]):
                view = await StreamClient(h.url, h.token, f"r{cursor}", CFG).run_to_end("s1", hd.message_id, cursor)
                assert view.status == "completed"
    run(main())


def test_consumer_killed_mid_stream_no_gap_no_dup(cbchaos_redis_proc, stream_proxies, run):
    async def main():
        async with Harness(cbchaos_redis_proc, stream_proxies, CFG) as h:
            hd = await h.relay.start("s2", ScriptedSource(text_turn(40), delay_s=0.01), model_id="m")
            kills = 0

            async def on_event(env, d):
                nonlocal kills
                if env.seq % 7 == 0 and kills < 5:
                    kills += 1
                    stream_proxies["consumer"].reset_all()  # the blocking XREAD connection dies

            d = await _consume(h, "s2", hd.message_id, hd.after_seq, "k", on_event)
            await hd.wait()
            rep = await _full_check(h, "s2", [d])
            assert rep.ok, rep
            assert kills == 5 and d.items[-1][0].kind == "complete"
            # a consumer-side Redis drop never writes a false terminal (INV-7)
            assert fold([e for e, _ in d.items]).status == "completed"
    run(main())


def test_reply_lost_on_every_kind_of_call_is_idempotent(cbchaos_redis_proc, stream_proxies, run):
    """reset_peer during XADD: the script was applied, the reply is lost; the identical retry gets DUP."""
    async def main():
        async with Harness(cbchaos_redis_proc, stream_proxies, CFG) as h:
            calls = {"n": 0, "terminal": 0}

            def arm(script, kinds):  # every other call, and the terminal call's first attempt
                if script == "append":
                    calls["n"] += 1
                    first_terminal = "complete" in kinds and not calls["terminal"]
                    calls["terminal"] += "complete" in kinds
                    if calls["n"] % 2 == 1 or first_terminal:
                        stream_proxies["producer"].lose_next_reply()

            h.pstore.before_call = arm
            hd = await h.relay.start("s3", ScriptedSource(text_turn(30), delay_s=0.005), model_id="m")
            consumer = asyncio.create_task(_consume(h, "s3", hd.message_id, hd.after_seq, "c"))
            out = await hd.wait()
            h.pstore.before_call = None
            d = await asyncio.wait_for(consumer, 10)
            assert out.status == "completed" and out.retries >= 1, out
            assert any(op["type"] == "info" for op in h.history)  # indeterminate writes are recorded as info
            rep = await _full_check(h, "s3", [d])
            assert rep.ok, rep
    run(main())


def test_redis_down_and_back_mid_turn(cbchaos_redis_proc, stream_proxies, run):
    # The scenario is "an outage shorter than the lease": the producer must resume, not be
    # reaped. A 4 s lease around a 0.8 s outage keeps that true on a busy runner; the outage
    # actually applied is measured, and an outage that outlived the lease is not this scenario.
    cfg = StreamConfig.ci(lease_ttl_s=4.0)

    async def main():
        async with Harness(cbchaos_redis_proc, stream_proxies, cfg) as h:
            hd = await h.relay.start("s4", ScriptedSource(text_turn(30), delay_s=0.01), model_id="m")
            consumer = asyncio.create_task(_consume(h, "s4", hd.message_id, hd.after_seq, "c"))
            await asyncio.sleep(0.1)
            t_down = time.monotonic()
            for p in stream_proxies.values():
                p.down()
            await asyncio.sleep(0.8)
            for p in stream_proxies.values():
                p.up()
            outage_s = time.monotonic() - t_down
            out = await hd.wait()
            d = await asyncio.wait_for(consumer, 10)
            if out.status != "completed" and outage_s + cfg.lease_renew_s >= cfg.lease_ttl_s:
                pytest.skip(f"scenario not realized: the outage lasted {outage_s:.2f} s, the lease "
                            f"is {cfg.lease_ttl_s} s")
            assert out.status == "completed", out
            rep = await _full_check(h, "s4", [d])
            assert rep.ok, rep
    run(main())


def test_store_down_past_lease_is_reaped_once(cbchaos_redis_proc, stream_proxies, run):
    async def main():
        cfg = StreamConfig.ci(write_deadline_s=1.0, terminal_deadline_s=1.5)
        async with Harness(cbchaos_redis_proc, stream_proxies, cfg) as h:
            hd = await h.relay.start("s5", ScriptedSource(text_turn(50), delay_s=0.02), model_id="m")
            consumer = asyncio.create_task(_consume(h, "s5", hd.message_id, hd.after_seq, "c"))
            await asyncio.sleep(0.1)
            stream_proxies["producer"].down()
            out = await hd.wait()
            # the relay gave up writing; the reaper (direct connection) ends it after the lease
            d = await asyncio.wait_for(consumer, cfg.lease_ttl_s + cfg.reaper_interval_s + cfg.deliver_bound_s + 2)
            stream_proxies["producer"].up()
            assert d.items[-1][0].kind == "cancelled" and d.items[-1][0].payload["reason"] == "producer_lost"
            assert out.status in ("unknown", "interrupted"), out
            rep = await _full_check(h, "s5", [d])
            assert rep.ok, rep
    run(main())


def test_consumer_busy_single_connection(cbchaos_redis_proc, stream_proxies, run):
    async def main():
        async with Harness(cbchaos_redis_proc, stream_proxies, CFG) as h:
            hd = await h.relay.start("s6", ScriptedSource(text_turn(3), stall_at=2), model_id="m")
            c = StreamClient(h.url, h.token, "one", CFG)
            agen = c.follow("s6", hd.message_id, hd.after_seq)
            first = await agen.__anext__()
            assert first.kind == "turn_started"
            with pytest.raises(ConsumerBusy):
                await c.follow("s6").__anext__()
            await h.relay.cancel("s6", hd.message_id)
            rest = [e async for e in agen]
            assert rest[-1].kind == "cancelled"
    run(main())


N_TURNS = int(os.environ.get("CBCHAOS_STREAM_TURNS", "24"))


def test_random_fault_turns(cbchaos_redis_proc, stream_proxies, run):
    """Acceptance: N turns with random faults (200 with CBCHAOS_STREAM_TURNS=200): 0 gaps, 0 duplicates,
    exactly one terminal per message, every bootstrap failure visible on replay, live terminal <= 5 s."""
    rng = random.Random(int(os.environ.get("CBCHAOS_SEED", "1234")))

    async def main():
        async with Harness(cbchaos_redis_proc, stream_proxies, CFG) as h:
            convs = ["r0", "r1", "r2"]
            deliveries, written = [], {}
            boot_failed = []
            b0 = 0
            h.calls = []
            orig_call = h.pstore._call

            async def logged(name, c, args, kinds=()):
                h.calls.append((name, c, str(args[:3])[:80], time.monotonic()))
                try:
                    r = await orig_call(name, c, args, kinds)
                    h.calls.append((name, c, "->", str(r)[:80]))
                    return r
                except Exception as e:
                    h.calls.append((name, c, "!!", repr(e)[:80]))
                    raise
            h.pstore._call = logged
            for i in range(N_TURNS):
                conv = convs[i % len(convs)]
                mode = rng.choice(["ok", "ok", "boot", "mid", "reset_write", "reset_read", "down"])
                kw = {}
                if mode == "boot":
                    kw["fail_stage"] = {rng.choice(["model_config", "session", "transport"]): RuntimeError("boot")}
                if mode == "mid":
                    kw["fail_at"] = {3: SourceFailure("provider 500", "source.provider_error")}
                src = ScriptedSource(text_turn(rng.randint(1, 12)), delay_s=0.003, **kw)
                if mode == "reset_write":
                    h.pstore.before_call = lambda s, k: stream_proxies["producer"].lose_next_reply() if rng.random() < 0.4 else None
                try:
                    hd = await h.relay.start(conv, src, model_id="m", message_id=f"m{i}")
                except StoreUnavailable:  # B0: open_turn unresolved past write_deadline -> 503, allowed
                    h.pstore.before_call = None
                    b0 += 1
                    continue
                tasks = [asyncio.create_task(_consume(h, conv, hd.message_id, c, f"{conv}-{i}-{c}"))
                         for c in {hd.after_seq, hd.after_seq + rng.randint(0, 1)}]
                if mode == "reset_read":
                    await asyncio.sleep(0.02)
                    stream_proxies["consumer"].reset_all()
                if mode == "down":
                    await asyncio.sleep(0.01)
                    stream_proxies["producer"].down()
                    await asyncio.sleep(rng.uniform(0.1, 0.5))
                    stream_proxies["producer"].up()
                try:
                    out = await asyncio.wait_for(hd.wait(), 30)
                except asyncio.TimeoutError:
                    raise AssertionError(f"turn {i} ({mode}) did not end within 30 s: "
                                         f"{[x for x in h.calls if x[1] == conv][-12:]}") from None
                h.pstore.before_call = None
                rec = await h.astore.record(conv, hd.message_id)
                written[hd.message_id] = time.monotonic()  # upper bound of when the terminal became durable
                if mode == "boot":
                    boot_failed.append((conv, hd.message_id))
                done, pending = await asyncio.wait(tasks, timeout=10)
                if pending:
                    info = [(n, c.cursor, c.reconnects, c.notices, [e.seq for e, _ in d.items][-3:])
                            for n, (c, d) in h.clients.items() if n.startswith(f"{conv}-{i}-")]
                    entries = [(e.seq, e.kind, e.message_id) for e in await h.astore.read_all(conv)][-5:]
                    hist = [x for x in h.calls if x[1] == conv][-12:]
                    raise AssertionError(f"consumer stuck: mode={mode} out={out} rec={rec} {info} log tail={entries} {hist}")
                deliveries += [t.result() for t in tasks]
                assert rec["status"] != "in_progress", (mode, out)
            reader = LogReader(h.astore)
            for conv in convs:
                replays = {}
                for mid, rec in (await h.astore.records(conv)).items():
                    if rec.get("terminal_kind") == "error":
                        for c in {0, rec["first_seq"] - 1, rec["first_seq"], rec["terminal_seq"] - 1}:
                            replays[(c, mid)] = await asyncio.wait_for(
                                reader.collect(conv, message_id=mid, after_seq=c), 10)
                entries = await h.astore.read_all(conv)
                rep = check_stream(entries, records=await h.astore.records(conv),
                                   deliveries=[d for d in deliveries if d.name.startswith(conv + "-")],
                                   emissions=h.relay.emissions, replay=lambda c, m: replays[(c, m)])
                assert rep.ok, rep
                assert rep.gaps == 0 and rep.duplicates == 0
            for conv, mid in boot_failed:
                view = fold(await reader.collect(conv, message_id=mid, after_seq=0), mid)
                assert view.status == "failed" and view.error["code"].startswith("bootstrap.")
            # live consumers got their terminal within the bound of the durable write
            for d in deliveries:
                env, at = d.items[-1]
                assert env.is_terminal and at - written[env.message_id] <= LIVE_BOUND_S
    run(main(), timeout=240)
