"""Consumer-protocol invariants (docs/stream-design.md#invariants) against real Redis, through the kit's proxies:
INV-18 (one live consumer per client id), 21 (notice/heartbeat hygiene), 22 (transport failure is
not turn failure), 27 (follow across turns), 31 (slow client cut, producer independent),
32 (keepalive, also during a Redis outage).

Each check returns its violations (``INV-n: ...``); the test asserts none, and a paired test runs
the same check against a mutant from `pytest_cbchaos.testing.stream_mutants` and asserts it is
caught. Timing bounds carry ``LOAD_SLACK_S`` for a loaded 2-core CI machine; every mutant misses
them by seconds, not by the slack.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from typing import Any

from tests.stream.inv_kit import (no_violations as _no_violations, GatedSource, HttpKit, RawConn, notice_code, redis_client,
                     run_bounded, wait_until)
from tests.stream.sched_lag import kit_lag, wait_within_async
from pytest_cbchaos.stream import ScriptedSource, StreamConfig, StreamStore, check_stream
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.client import StreamClient, StreamSuperseded, StreamUnavailable
from pytest_cbchaos.stream.envelope import Envelope
from pytest_cbchaos.stream.sources import text_turn
from pytest_cbchaos.testing import stream_mutants as M

CFG = StreamConfig.ci(outage_close_s=1.0)
LOAD_SLACK_S = 0.4


async def _eventsource(kit: HttpKit, conv: str, mid: str, after: int, client_id: str,
                       conns: list[RawConn], deadline_s: float = 30.0) -> Delivery:
    """A browser EventSource: reconnects with ``Last-Event-ID`` = the last ``id:`` it saw (any event's)."""
    d = Delivery(after, name=client_id, target=mid)
    lei = str(after)
    deadline = time.monotonic() + deadline_s
    for _ in range(200):
        assert time.monotonic() < deadline, f"eventsource {client_id} did not reach the terminal"
        c = RawConn(kit.direct_url, kit.token, conv, {"message_id": mid, "client_id": client_id}, lei).start()
        conns.append(c)
        await c.ended.wait()
        if c.status not in (200, 503):
            return d  # 204 ends an EventSource; so does any other non-200 (it fails the connection)
        for f in c.frames:
            if f.kind == "event" and f.id is not None:
                lei = f.id  # the SSE rule: any event's id sets lastEventId
            env = f.envelope
            if env is not None:
                d.add(env, f.at)
                if env.is_terminal and env.message_id == mid:
                    return d
        await asyncio.sleep(0.1)  # EventSource's reconnection delay (the server says `retry: 1000`)
    raise AssertionError(f"eventsource {client_id}: too many reconnects")


def _frame_hygiene(conns: list[RawConn]) -> list[str]:
    """INV-21 on raw frames: notices carry no id and are not envelopes; `: hb N` never runs ahead."""
    bad: list[str] = []
    for c in conns:
        last_id = None
        for f in c.frames:
            if f.kind == "event" and f.event == "cbchaos":
                if f.id is not None:
                    bad.append(f"INV-21: notice {f.data} carries id: {f.id}")
                body = json.loads(f.data)
                if "seq" in body or "class" in body or "kind" in body:
                    bad.append(f"INV-21: notice {f.data} looks like an envelope")
            elif f.kind == "event" and f.event == "stream":
                last_id = int(f.id) if f.id is not None else None
            elif f.kind == "comment" and f.text.startswith("hb"):
                n = int(f.text.split()[1])
                if last_id is not None and n != last_id:
                    bad.append(f"INV-21: heartbeat `: hb {n}` after id {last_id}")
    return bad


async def _inv21(kit: HttpKit, faults: Any) -> list[str]:
    src = GatedSource(5, 10, delay_s=0.005)
    hd = await kit.relay.start("n21", src, model_id="m")
    conns: list[RawConn] = []
    es = asyncio.create_task(_eventsource(kit, "n21", hd.message_id, hd.after_seq, "es", conns))
    await wait_until(lambda: sum(len(c.envelopes) for c in conns) >= 5, 10, "the first entries")
    # Redis down mid-stream (consumer side): notice store_unavailable, response ends after outage_close_s
    with faults.down(kit.redis_proxy):
        await wait_until(lambda: len(conns) >= 2, 10, "the SSE response to end in the outage")
    # supersede: an older connection with the same client id gets notice `superseded`
    old = kit.conn("n21", message_id=hd.message_id, client_id="dup")
    await asyncio.wait_for(old.ready.wait(), 10)
    new = kit.conn("n21", message_id=hd.message_id, client_id="dup")
    await asyncio.wait_for(new.ready.wait(), 10)
    try:
        await asyncio.wait_for(old.ended.wait(), 20)
    except asyncio.TimeoutError:
        await old.close()
        src.gate.set()
        return [f"INV-18/21: the superseded connection did not end in 20 s; its frames: "
                f"{[(f.kind, f.event, f.data or f.text) for f in old.frames][-6:]}"]
    src.gate.set()
    d = await asyncio.wait_for(es, 30)
    await asyncio.wait_for(new.ended.wait(), 10)
    bad = _frame_hygiene(conns + [old, new])
    codes = [notice_code(f) for c in conns + [old] for f in c.notices]
    if "store_unavailable" not in codes or "superseded" not in codes:
        bad.append(f"setup: expected store_unavailable and superseded notices, got {codes}")
    if any(e.is_terminal for e in old.envelopes):
        bad.append("INV-21: the superseded connection got a terminal")
    entries = await kit.astore.read_all("n21")
    rep = check_stream(entries, records=await kit.astore.records("n21"), deliveries=[d])
    bad += [f"INV-21 (resume by Last-Event-ID): {v}" for v in rep.violations]
    return bad


def test_inv21_notice_and_heartbeat_hygiene(run_in_kit, cbchaos_faults):
    _no_violations(run_in_kit(_inv21, CFG, cbchaos_faults))


def test_inv21_mutant_m9_notice_with_id_is_caught(run_in_kit, cbchaos_faults):
    bad = run_in_kit(_inv21, CFG, cbchaos_faults, kit={"policy": M.M9NoticeWithId()})
    assert any("carries id" in v for v in bad), bad
    # the fake id moved Last-Event-ID past a real entry: skipped (gap) or refused (cursor_ahead)
    assert any("INV-1 no gap" in v or "INV-6" in v for v in bad), bad


def _flushall(proc: Any) -> None:
    with proc.client() as c:
        c.flushall()


# -- INV-18 ----------------------------------------------------------------------------------------
async def _superseded_client(kit: HttpKit, hd: Any, src: GatedSource, client_cls: type[StreamClient]) -> list[str]:
    """A live StreamClient superseded by another instance with the same id ends, without reconnecting;
    the newer one completes (the gate opens meanwhile)."""
    bad: list[str] = []
    mid = hd.message_id
    c1, c2 = client_cls(kit.direct_url, kit.token, "x", CFG), StreamClient(kit.direct_url, kit.token, "x", CFG)
    got1: list[Envelope] = []

    async def follow1() -> None:
        async for env in c1.follow("n18", mid, hd.after_seq):
            got1.append(env)

    t1 = asyncio.create_task(follow1())
    await wait_until(lambda: len(got1) >= 1, 10, "client 1's first entry")
    t2 = asyncio.create_task(c2.run_to_end("n18", mid, hd.after_seq))
    done, _ = await asyncio.wait({t1}, timeout=CFG.heartbeat_s + 5)
    if t1 not in done:
        bad.append(f"INV-18: superseded client 1 still running after 5 s ({c1.reconnects} reconnects)")
        t1.cancel()
        await asyncio.gather(t1, return_exceptions=True)
    elif not isinstance(t1.exception(), StreamSuperseded):
        bad.append(f"INV-18: superseded client 1 ended with {t1.exception()!r}")
    src.gate.set()
    try:
        view2 = await asyncio.wait_for(t2, 15)
        if view2.status != "completed":
            bad.append(f"INV-18: the newer client's view is {view2.status}")
    except StreamSuperseded:
        bad.append("INV-18: the newer client 2 was superseded by the older client 1 reconnecting")
    return bad


async def _inv18(kit: HttpKit, faults: Any, client_cls: type[StreamClient] = StreamClient,
                 first_only: bool = False) -> list[str]:
    bad: list[str] = []
    src = GatedSource(3, 3)
    hd = await kit.relay.start("n18", src, model_id="m")
    mid = hd.message_id
    other = kit.conn("n18", message_id=mid, client_id="v")
    a = kit.conn("n18", via_proxy=True, message_id=mid, client_id="u")
    await asyncio.wait_for(asyncio.gather(a.ready.wait(), other.ready.wait()), 10)
    await wait_until(lambda: kit.consumers == 2, 10, "two live consumers")
    # reconnect while the old connection is half-open (replies blackholed on stream-http)
    with faults.partition(kit.http_proxy, "downstream"):
        b = kit.conn("n18", message_id=mid, client_id="u")
        await asyncio.wait_for(b.ready.wait(), 10)
        t_b, lag = time.monotonic(), kit_lag(kit)
        bound = CFG.heartbeat_s + 0.1 + LOAD_SLACK_S  # DS-18; an overlap past it is the violation
        try:
            await wait_within_async(lambda: kit.consumers == 2, bound, lag, "the older connection to end")
            overlap, waited = time.monotonic() - t_b, lag.waited()
            if overlap - waited > bound:  # judged lag-aware (docs/stream.md, invariant table notes)
                bad.append(f"INV-18: two live connections for client u during {overlap:.2f}s "
                           f"({waited:.2f}s measured scheduling lag, bound {bound:.2f}s)")
        except AssertionError as exc:
            bad.append(f"INV-18: the older connection of client u is still live after the newer one ({exc})")
    if first_only and bad:  # the older connection outlived its bound: the mutant is caught already
        src.gate.set()
    else:
        bad += await _superseded_client(kit, hd, src, client_cls)
    await asyncio.wait_for(asyncio.gather(b.ended.wait(), other.ended.wait()), 15)
    if any(e.is_terminal for e in a.envelopes):
        bad.append("INV-18: the superseded connection got a terminal")
    for name, c in (("newer u", b), ("other id v", other)):
        envs = c.envelopes
        if c.notices or not envs or not envs[-1].is_terminal:
            bad.append(f"INV-18: {name} disturbed: notices {[x.data for x in c.notices]}, last {envs[-1:]}")
        elif [e.seq for e in envs] != list(range(envs[0].seq, envs[-1].seq + 1)):
            bad.append(f"INV-18: {name} has a gap")
    await a.close()
    return bad


def test_inv18_one_live_consumer_per_client_id(run_in_kit, cbchaos_faults):
    _no_violations(run_in_kit(_inv18, CFG, cbchaos_faults))


def test_inv18_mutants_no_ownership_and_client_reconnect_are_caught(run_in_kit, cbchaos_redis_proc, cbchaos_faults):
    bad = run_in_kit(_inv18, CFG, cbchaos_faults, first_only=True, kit={"loop_class": M.M18NoOwnership})
    assert any("still live" in v for v in bad), bad
    _flushall(cbchaos_redis_proc)  # the second half starts from an empty Redis
    bad = run_in_kit(_inv18, CFG, cbchaos_faults, client_cls=M.M18ReconnectWhenSuperseded)
    assert any("client 1" in v for v in bad), bad



# -- INV-22 ----------------------------------------------------------------------------------------
async def _inv22(kit: HttpKit, faults: Any, client_cls: type[StreamClient] = StreamClient) -> list[str]:
    bad: list[str] = []
    src = GatedSource(5, 5)
    hd = await kit.relay.start("n22", src, model_id="m")
    client = client_cls(kit.http_url, kit.token, "t22", CFG.replace(reconnect_budget_s=1.0))
    task = asyncio.create_task(client.run_to_end("n22", hd.message_id, hd.after_seq))
    await wait_until(lambda: client.cursor >= hd.first_seq + 3, 10, "the first entries")
    with faults.down(kit.http_proxy):  # stream-http unreachable well past the reconnect budget
        done, _ = await asyncio.wait({task}, timeout=15)
    if task not in done:
        task.cancel()
        bad.append("INV-22: the client neither ended nor reported StreamUnavailable")
    elif task.exception() is None:
        view = task.result()
        bad.append(f"INV-22: a transport failure gave a TurnView with status {view.status!r}")
    elif not isinstance(task.exception(), StreamUnavailable):
        bad.append(f"INV-22: the client raised {task.exception()!r}, not StreamUnavailable")
    src.gate.set()
    out = await asyncio.wait_for(hd.wait(), 15)
    later = await StreamClient(kit.http_url, kit.token, "t22b", CFG).run_to_end("n22", hd.message_id, hd.after_seq)
    if later.status != out.status or out.status != "completed":
        bad.append(f"INV-22: a later follow says {later.status!r}, the producer {out.status!r}")
    return bad


def test_inv22_transport_failure_is_not_turn_failure(run_in_kit, cbchaos_faults):
    _no_violations(run_in_kit(_inv22, CFG, cbchaos_faults))


def test_inv22_mutant_failed_on_transport_is_caught(run_in_kit, cbchaos_faults):
    bad = run_in_kit(_inv22, CFG, cbchaos_faults, client_cls=M.M22FailedOnTransport)
    assert any("status 'failed'" in v for v in bad), bad


# -- INV-27 ----------------------------------------------------------------------------------------
async def _inv27(kit: HttpKit, faults: Any) -> list[str]:
    bad: list[str] = []
    src_a = GatedSource(2, 2)
    ha = await kit.relay.start("n27", src_a, model_id="m", message_id="A")
    folw = kit.conn("n27", message_id="A", follow="1", after_seq=str(ha.after_seq))
    plain = kit.conn("n27", message_id="A", after_seq=str(ha.after_seq))
    await asyncio.wait_for(asyncio.gather(folw.ready.wait(), plain.ready.wait()), 10)
    src_a.gate.set()
    await asyncio.wait_for(ha.wait(), 10)
    await asyncio.wait_for(plain.ended.wait(), 10)
    a_term = (await kit.astore.record("n27", "A"))["terminal_seq"]
    # back-to-back turns with an idle gap well inside follow_idle_s (1 s)
    t_a = time.monotonic()
    await wait_until(lambda: time.monotonic() - t_a >= 0.3, 2, "the gap between turns")
    hb = await kit.relay.start("n27", ScriptedSource(text_turn(3)), model_id="m", message_id="B",
                               previous_message_id="A")
    await asyncio.wait_for(hb.wait(), 10)
    try:
        await asyncio.wait_for(folw.ended.wait(), CFG.follow_idle_s + 10)
    except asyncio.TimeoutError:
        bad.append("INV-27: the follow connection did not end after B (follow_idle_s)")
    seqs = [e.seq for e in folw.envelopes]
    b_term = (await kit.astore.record("n27", "B"))["terminal_seq"]
    if seqs != list(range(ha.first_seq, b_term + 1)):
        bad.append(f"INV-27: one follow=1 connection delivered {seqs[:3]}..{seqs[-3:]}, "
                   f"not A's turn_started {ha.first_seq} through B's terminal {b_term}")
    if [e.seq for e in plain.envelopes][-1:] != [a_term]:
        bad.append("INV-27: without follow the connection did not end at A's terminal")
    # without follow nothing retargets: a reconnect after A's terminal is 204
    again = kit.conn("n27", message_id="A", after_seq=str(a_term))
    await asyncio.wait_for(again.ended.wait(), 10)
    if again.status != 204:
        bad.append(f"INV-27: a plain reconnect after A's terminal answered {again.status}, not 204")
    # a reset between P's terminal and Q's turn_started: a following client still reaches Q
    hp = await kit.relay.start("n27b", ScriptedSource(text_turn(3)), model_id="m", message_id="P")
    await asyncio.wait_for(hp.wait(), 10)
    client = StreamClient(kit.http_url, kit.token, "f27", CFG)
    d = Delivery(hp.after_seq, name="f27")

    async def follower() -> None:
        async for env in client.follow("n27b", "P", hp.after_seq, follow=True):
            d.add(env, time.monotonic())
            if env.is_terminal and env.message_id == "Q":
                return

    task = asyncio.create_task(follower())
    await wait_until(lambda: any(e.is_terminal for e, _ in d.items), 10, "P's terminal at the follower")
    with faults.reset_peer(kit.http_proxy):  # the next bytes (a heartbeat) reset the connection
        await wait_until(lambda: client.reconnects >= 1, 10, "the follower's connection to be reset")
        hq = await kit.relay.start("n27b", ScriptedSource(text_turn(3)), model_id="m", message_id="Q",
                                   previous_message_id="P")
        await asyncio.wait_for(hq.wait(), 10)
    try:
        await asyncio.wait_for(task, 15)
    except asyncio.TimeoutError:
        bad.append("INV-27: the follower never reached Q after the reset")
    rep = check_stream(await kit.astore.read_all("n27b"), records=await kit.astore.records("n27b"), deliveries=[d])
    bad += [f"INV-27 (reset between turns): {v}" for v in rep.violations]
    if not d.items or d.items[-1][0].message_id != "Q":
        bad.append("INV-27: the follower did not reach Q after the reset")
    return bad


def test_inv27_follow_across_turns(run_in_kit, cbchaos_faults):
    _no_violations(run_in_kit(_inv27, CFG, cbchaos_faults))


def test_inv27_mutant_retarget_only_at_connect_is_caught(run_in_kit, cbchaos_faults):
    bad = run_in_kit(_inv27, CFG, cbchaos_faults, kit={"loop_class": M.M27RetargetOnlyAtConnect})
    assert any("one follow=1 connection" in v for v in bad), bad


# -- INV-31 ----------------------------------------------------------------------------------------
SLOW_CFG = CFG.replace(slow_client_s=1.5)


async def _stalled_client(url: str, token: str, conv: str, mid: str, after: int) -> socket.socket:
    """A client that reads the response head and then stops reading (tiny receive window)."""
    host, port = url.split("//")[1].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    req = (f"GET /v1/conversations/{conv}/stream?message_id={mid}&after_seq={after}&client_id=slow HTTP/1.1\r\n"
           f"Host: {host}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n")
    await asyncio.get_running_loop().sock_sendall(sock, req.encode())
    head = b""
    deadline = time.monotonic() + 10
    while b": ready" not in head:
        assert time.monotonic() < deadline, f"no SSE head from the app: {head[:200]!r}"
        head += await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1024), 10)
    return sock


async def _inv31(kit: HttpKit) -> list[str]:
    bad: list[str] = []
    cfg = kit.cfg
    src = GatedSource(1, 40, size=150_000)  # ~6 MB: more than the kernel socket buffers hold
    hd = await kit.relay.start("n31", src, model_id="m")
    sock = await _stalled_client(kit.direct_url, kit.token, "n31", hd.message_id, hd.after_seq)
    fast = StreamClient(kit.direct_url, kit.token, "fast", cfg)
    fast_task = asyncio.create_task(fast.run_to_end("n31", hd.message_id, hd.after_seq))
    await wait_until(lambda: kit.consumers == 2, 10, "both consumers connected")
    src.gate.set()
    out = await asyncio.wait_for(hd.wait(), 30)  # the producer never waits on the stalled client
    if out.status != "completed":
        bad.append(f"INV-31: producer ended {out.status} with a stalled consumer")
    view = await asyncio.wait_for(fast_task, 30)
    if view.status != "completed":
        bad.append(f"INV-31: a fast consumer beside the stalled one saw {view.status}")
    # its write has been stuck since before this point: the cut is due within slow_client_s, and the
    # handler frees the slot after a cleanup bounded by block_ms + 2 s (pytest_cbchaos/stream/http.py)
    try:
        await wait_within_async(lambda: kit.consumers == 0, cfg.slow_client_s + cfg.block_ms / 1000 + 2, kit_lag(kit),
                                "the stalled client to be cut")
    except AssertionError as exc:
        bad.append(f"INV-31: the stalled client is still connected ({exc})")
    sock.close()
    # the stalled client resumes from the cursor it had consumed (turn_started) and reaches the terminal
    d = Delivery(hd.first_seq, name="slow-resumed", target=hd.message_id)
    async for env in StreamClient(kit.direct_url, kit.token, "slow", cfg).follow("n31", hd.message_id, hd.first_seq):
        d.add(env, time.monotonic())
    rep = check_stream(await kit.astore.read_all("n31"), records=await kit.astore.records("n31"), deliveries=[d])
    bad += [f"INV-31 (resume): {v}" for v in rep.violations]
    return bad


def test_inv31_slow_client_cut_and_resumes(run_in_kit):
    _no_violations(run_in_kit(_inv31, SLOW_CFG, timeout=90))


def test_inv31_mutant_no_slow_client_cut_is_caught(run_in_kit):
    bad = run_in_kit(_inv31, SLOW_CFG, timeout=90, kit={"policy": M.M31NoSlowClientCut()})
    assert any("still connected" in v for v in bad), bad


# -- INV-32 ----------------------------------------------------------------------------------------
KEEPALIVE_CFG = StreamConfig.ci(outage_close_s=3.0)


async def _inv32(kit: HttpKit, faults: Any) -> list[str]:
    bad: list[str] = []
    cfg = kit.cfg
    src = GatedSource(1, 1)  # stalls after one delta: nothing to send
    hd = await kit.relay.start("n32", src, model_id="m")
    c = kit.conn("n32", message_id=hd.message_id, after_seq=str(hd.after_seq))
    await asyncio.wait_for(c.ready.wait(), 10)
    t0 = time.monotonic()
    await wait_until(lambda: time.monotonic() - t0 >= 4 * cfg.heartbeat_s, 10, "a healthy idle window")
    with faults.down(kit.redis_proxy):  # consumer side: Redis unreachable, shorter than outage_close_s
        t1 = time.monotonic()
        await wait_until(lambda: time.monotonic() - t1 >= 2.0, 10, "the outage window")
    t2 = time.monotonic()
    src.gate.set()
    await asyncio.wait_for(c.ended.wait(), 15)
    bound = cfg.heartbeat_s + 0.1 + LOAD_SLACK_S
    times = [t0] + [f.at for f in c.frames if t0 <= f.at <= t2] + [t2]
    worst = max(b - a for a, b in zip(times, times[1:]))
    if worst > bound:
        bad.append(f"INV-32: {worst:.2f}s without a byte on an idle stream (bound {bound:.2f}s)")
    hbs = [f for f in c.frames if f.kind == "comment" and f.text.startswith("hb")]
    if not hbs:
        bad.append("INV-32: no `: hb` keepalive at all")
    if not c.envelopes or not c.envelopes[-1].is_terminal:
        bad.append("INV-32: the stream did not reach its terminal after the outage")
    return bad


def test_inv32_keepalive_idle_and_during_outage(run_in_kit, cbchaos_faults):
    _no_violations(run_in_kit(_inv32, KEEPALIVE_CFG, cbchaos_faults))


def test_inv32_mutant_keepalive_on_data_only_is_caught(run_in_kit, cbchaos_faults):
    bad = run_in_kit(_inv32, KEEPALIVE_CFG, cbchaos_faults, kit={"policy": M.M32KeepaliveOnDataOnly()})
    assert any("without a byte" in v for v in bad), bad


class _TakeoverAfterRead:
    """A Redis client whose GET of ``key`` lets another connection take ``key`` over right after the
    read: the worst interleaving for a refresh that reads, then writes."""

    def __init__(self, client: Any, key: str, newer: str) -> None:
        self._client, self._key, self._newer = client, key, newer
        self.took_over = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def get(self, key: str) -> Any:
        value = await self._client.get(key)
        if key == self._key:
            await self._client.set(key, self._newer, px=60_000)
            self.took_over = True
        return value


async def _refresh_during_takeover(proc: Any, store_cls: type[StreamStore]) -> list[str]:
    client = redis_client(proc.host, proc.port, proc.password)
    try:
        store = store_cls(client, CFG.replace(prefix=f"own{secrets.token_hex(4)}:"))
        key = store.consumer_key("u")
        if await store.own_consumer("u", "older") is not None:
            return ["setup: the first connection does not own its client id"]
        store.redis = racing = _TakeoverAfterRead(client, key, "newer")
        told = await store.own_consumer("u", "older")
        store.redis = client
        if not racing.took_over:  # an atomic refresh has no read to race: the takeover comes after it
            await client.set(key, "newer", px=60_000)
            told = await store.own_consumer("u", "older")
        bad = []
        if (await client.get(key)) != b"newer":
            bad.append("INV-18: the older connection's refresh overwrote the newer owner")
        if await store.own_consumer("u", "newer") is not None:
            bad.append("INV-18: the newer connection was told it was superseded")
        if told != "newer":
            bad.append(f"INV-18: the older connection was not told it was superseded (got {told!r})")
        await client.delete(key)
        return bad
    finally:
        await client.aclose()


def test_inv18_ownership_refresh_racing_a_takeover(cbchaos_redis_proc):
    _no_violations(run_bounded(_refresh_during_takeover(cbchaos_redis_proc, StreamStore)))


def test_inv18_mutant_check_then_set_refresh_is_caught(cbchaos_redis_proc):
    bad = run_bounded(_refresh_during_takeover(cbchaos_redis_proc, M.M18CheckThenSetStore))
    assert "INV-18: the older connection's refresh overwrote the newer owner" in bad, bad
