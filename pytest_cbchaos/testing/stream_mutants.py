"""Deliberately broken producers and consumers for the stream checker's own tests (mutants of
docs/stream-design.md#invariants).

Each one breaks exactly one rule; `tests/stream/test_mutants.py` asserts the checker catches it.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Awaitable, Callable

from pytest_cbchaos.stream.envelope import Envelope, encode_payload, kind_class
from pytest_cbchaos.stream.reader import Notice, ReadLoop
from pytest_cbchaos.stream.reaper import Reaper
from pytest_cbchaos.stream.relay import TurnRelay, _Run
from pytest_cbchaos.stream.store import StreamStore, _s


class M3StopOnAnyTerminal(ReadLoop):
    """M3: replay stops at the first terminal of *any* message (claudex's bug) -> INV-8/6."""

    async def items(self):  # type: ignore[override]
        async for item in super().items():
            yield item
            if isinstance(item, Envelope) and item.is_terminal:
                return


class M5PlainXaddProducer:
    """M5: plain ``XADD *`` outside the scripts, retried on a reset -> INV-2/14 (duplicates)."""

    def __init__(self, store: StreamStore) -> None:
        self.store = store
        self.emissions: list[tuple[str, int, str, bytes]] = []

    async def write(self, conv: str, mid: str, sid: str, events: list[tuple[str, str, bytes]], *,
                    epoch: str = "0" * 16, retries: int = 3) -> None:
        log = self.store.keys(conv)[1]
        for step, (kind, cls, payload) in enumerate(events, start=1):
            self.emissions.append((sid, step, kind, payload))
            for _ in range(retries):
                try:
                    await self.store.redis.xadd(log, {"m": mid, "s": sid, "n": step, "k": kind, "c": cls, "t": 0,
                                                      "x": epoch, "p": payload})
                    break
                except Exception:
                    continue  # "retry on reset": the first one may have been applied


class _FlushedOnlyRun(_Run):
    def _content_seen(self) -> int:
        return self.content_flushed


def m11_flushed_only_empty_check(relay: TurnRelay) -> TurnRelay:
    """M11: the empty-turn check counts flushed events only -> a fast turn ends ``source.empty`` (INV-20)."""
    relay.run_class = _FlushedOnlyRun
    return relay


async def _write_unchecked(store: StreamStore, call: Any, reply: Any) -> Any:
    """Append ``call``'s events after ``meta.last_seq`` with plain XADDs, outside the script's checks."""
    meta, log = store.keys(call.conversation_id)[:2]
    last = int(await store.redis.hget(meta, "last_seq"))
    for i, (kind, cls, ts, payload) in enumerate(call.events):
        last += 1
        await store.redis.xadd(log, {"m": call.message_id, "s": call.stream_id, "n": call.first_step + i,
                                     "k": kind, "c": cls, "t": ts, "x": call.epoch, "p": payload}, id=f"{last}-0")
    await store.redis.hset(meta, "last_seq", last)
    return type(reply)("OK", last - len(call.events) + 1, last, "")


class M13NoFencingStore(StreamStore):
    """M13: no fencing check: a refused (FENCED/CLOSED) append is written anyway -> INV-16/3.

    The lease renewal does not check the fence either, so a resumed producer never learns it was
    superseded and goes on writing (otherwise the check would depend on whether the renew loop
    or the next append runs first after SIGCONT)."""

    async def renew(self, conv: str, stream_id: str):  # type: ignore[override]
        reply = await super().renew(conv, stream_id)
        return type(reply)("OK", 0, 0, "") if reply.status == "FENCED" else reply

    async def append(self, call: Any):  # type: ignore[override]
        reply = await super().append(call)
        if reply.status not in ("FENCED", "CLOSED"):
            return reply
        return await _write_unchecked(self, call, reply)


class M5RetryWritesAgainStore(StreamStore):
    """M5 in the relay's store: a resend whose first attempt was applied writes its events again,
    as a plain ``XADD`` retried on a reset does -> INV-2/3/14 (duplicates, a second terminal)."""

    async def append(self, call: Any):  # type: ignore[override]
        reply = await super().append(call)
        if reply.status != "DUP":
            return reply
        return await _write_unchecked(self, call, reply)


class M17SilentShutdownRun(_Run):
    """M17: a relay shutdown abandons its runs (no ``cancelled{relay_shutdown}``): live consumers
    wait for the reaper's ``producer_lost`` after the lease instead -> INV-17."""

    async def finish(self, kind: str, payload: Any) -> None:  # type: ignore[override]
        if kind == "cancelled" and isinstance(payload, dict) and payload.get("reason") == "relay_shutdown":
            return
        await super().finish(kind, payload)


class _NeverRenewRun(_Run):
    async def _renew_loop(self) -> None:
        return None


class _SlowRenewRun(_Run):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.cfg = _SlowRenewConfig(self.cfg)


class _SlowRenewConfig:
    """The run's config with ``lease_renew_s`` tripled (a ``StreamConfig`` would refuse it: > ttl/3)."""

    def __init__(self, cfg: Any) -> None:
        self._cfg = cfg
        self.lease_renew_s = 3 * cfg.lease_renew_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cfg, name)


class _RunRelay(TurnRelay):
    broken_run: type = _Run

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.run_class = self.broken_run


class M14NeverRenewRelay(_RunRelay):
    """M14 (renewal side): a run never renews its lease: it lapses after ``lease_ttl_s`` and the reaper
    fences the producer -> INV-14 lease renewal (the lapse must not excuse it)."""

    broken_run = _NeverRenewRun


class M14SlowRenewRelay(_RunRelay):
    """M14 (renewal side): a run renews at 3x ``lease_renew_s`` -> INV-14 lease renewal."""

    broken_run = _SlowRenewRun


async def m6_status_only_cancel(store: StreamStore, conv: str, mid: str) -> None:
    """M6: cancellation as a status-only update (no terminal entry) -> INV-17/3/12."""
    await store.redis.hset(store.keys(conv)[2], mapping={f"{mid}|status": "interrupted"})
    await store.redis.delete(store.keys(conv)[4])


async def m8_cursor_before_delivery(loop: ReadLoop, crash_at_seq: int) -> list[Envelope]:
    """M8: the cursor is advanced before the application consumed the entry; the consumer
    crashes while handling ``crash_at_seq`` and resumes from its (too far) cursor -> INV-1."""
    delivered: list[Envelope] = []
    cursor = loop.cursor
    async for item in loop.items():
        if isinstance(item, Envelope):
            cursor = item.seq  # advanced first
            if item.seq == crash_at_seq:
                break  # crash before delivering
            delivered.append(item)
    await loop.aclose()
    resumed = ReadLoop(loop.store, loop.conv, after_seq=cursor, message_id=loop.target)
    await resumed.connect()
    async for item in resumed.items():
        if isinstance(item, Envelope):
            delivered.append(item)
    await resumed.aclose()
    return delivered


# M4: a consumer that writes an `error` on a Redis failure ------------------------------------
_M4_WRITE = """
local last = tonumber(redis.call('HGET', KEYS[1], 'last_seq')) + 1
redis.call('XADD', KEYS[2], last .. '-0', 'm', ARGV[1], 's', ARGV[2], 'n', 1, 'k', 'error', 'c', 'terminal',
           't', ARGV[3], 'x', ARGV[4], 'p', ARGV[5])
redis.call('HSET', KEYS[1], 'last_seq', last)
redis.call('HSET', KEYS[3], ARGV[1] .. '|status', 'failed', ARGV[1] .. '|last_seq', last,
           ARGV[1] .. '|terminal_seq', last, ARGV[1] .. '|terminal_kind', 'error',
           ARGV[1] .. '|error_code', 'consumer.store_unavailable', ARGV[1] .. '|error_message', 'redis failed')
return last
"""


class M4ErrorOnStoreFailure(ReadLoop):
    """M4: on a Redis failure the consumer persists an ``error`` for its target (claudex's SSE-side
    bug) through a second connection ``writer``: a healthy turn is shown failed -> INV-7 (and the
    producer is stopped with ``CLOSED``)."""

    def __init__(self, *args: Any, writer: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.writer = writer
        self.wrote = False

    async def items(self):  # type: ignore[override]
        async for item in super().items():
            if isinstance(item, Notice) and item.code == "store_unavailable" and not self.wrote:
                self.wrote = True
                meta, log, msgs = self.store.keys(self.conv)[:3]
                payload = encode_payload("error", {"code": "consumer.store_unavailable", "stage": "stream",
                                                   "message": "redis failed", "retriable": True, "partial": True})
                await self.writer.eval(_M4_WRITE, 3, meta, log, msgs, self.target, f"consumer:{self.token}",
                                       int(time.time() * 1000), self.epoch, payload)
            yield item


# M7: no reaper ------------------------------------------------------------------------------
class M7NoReaper(Reaper):
    """M7: no reaper: a message whose producer died stays ``in_progress`` forever -> INV-15 (INV-3)."""

    async def reap_conversation(self, conv: str) -> int:  # type: ignore[override]
        return 0


# M10: MAXLEN trimming -----------------------------------------------------------------------
async def m10_maxlen_trim(store: StreamStore, conv: str, maxlen: int) -> int:
    """M10: ``XTRIM MAXLEN`` (exact): cuts into a live message and below cursors, ``floor_seq`` not
    moved, so the cut is silent -> INV-26 (the checker sees a hole: INV-10/11)."""
    return int(await store.redis.xtrim(store.keys(conv)[1], maxlen=maxlen, approximate=False))


# M12: payload kept by reference until flush --------------------------------------------------
class _Lazy:
    """A content payload held by reference; serialised only when the batch is flushed."""

    def __init__(self, kind: str, payload: Any) -> None:
        self.kind, self.payload = kind, payload

    def __len__(self) -> int:
        return 64  # a size estimate for the batch-bytes rule

    def encode(self) -> bytes:
        return encode_payload(self.kind, self.payload)


class _ByReferenceRun(_Run):
    def _freeze(self, kind: str, payload: Any) -> Any:  # type: ignore[override]
        if kind_class(kind) == "content":
            return _Lazy(kind, payload)
        return super()._freeze(kind, payload)

    def _call(self, terminal: Any = None) -> Any:
        self.pending = [(k, c, t, d.encode() if isinstance(d, _Lazy) else d) for k, c, t, d in self.pending]
        return super()._call(terminal)


def m12_payload_by_reference(relay: TurnRelay) -> TurnRelay:
    """M12: content payloads kept by reference until flush: a source that mutates a payload object
    after emitting it changes what is stored -> INV-9 (log bytes != emitted bytes)."""
    relay.run_class = _ByReferenceRun
    return relay


# Consumer-protocol mutants (INV-18, 21, 22, 25, 27, 28, 29, 30, 31, 32) -------------------------
from dataclasses import replace as _replace  # noqa: E402

from pytest_cbchaos.stream.client import StreamClient, StreamUnavailable  # noqa: E402
from pytest_cbchaos.stream.fold import TurnView, fold  # noqa: E402
from pytest_cbchaos.stream.http import SSEPolicy  # noqa: E402


class M9NoticeWithId(SSEPolicy):
    """M9: a notice carries an ``id:`` (claudex's unpersisted fake seq ``cursor + 1``): an
    EventSource resuming with that ``Last-Event-ID`` skips a real entry -> INV-21 (and INV-1)."""

    def notice(self, notice: Notice, cursor: int) -> str:
        return f"id: {cursor + 1}\n" + super().notice(notice, cursor)


class M18NoOwnership(ReadLoop):
    """M18: the read loop never checks the ``consumer:<client_id>`` owner: two connections with
    one client id both stay live -> INV-18."""

    async def _wakeup_checks(self) -> Notice | None:  # type: ignore[override]
        notice = await super()._wakeup_checks()
        return None if notice is not None and notice.code == "superseded" else notice


class M18CheckThenSetStore(StreamStore):
    """M18 (race): the ownership refresh as a GET, then a SET. A newer connection's takeover that
    lands between the two is overwritten by the older one, and the newer one is then told it was
    superseded -> INV-18 (a clean-clone CI run hit this before the refresh became one script)."""

    async def own_consumer(self, client_id: str, token: str) -> str | None:  # type: ignore[override]
        key = self.consumer_key(client_id)
        owner = await self.redis.get(key)
        if owner is not None and _s(owner) != token:
            return _s(owner)
        await self.redis.set(key, token, px=int(3 * self.config.heartbeat_s * 1000))
        return None


class M18ReconnectWhenSuperseded(StreamClient):
    """M18 (client side): a superseded client reconnects and takes the stream back, so two
    clients with one id evict each other forever -> INV-18."""

    def _on_notice(self, data: str) -> None:
        return None


class M22FailedOnTransport(StreamClient):
    """M22: the client turns a transport failure into a failed turn (claudex's synthetic error)
    -> INV-22 (a healthy turn shown ``failed``)."""

    async def run_to_end(self, conversation_id: str, message_id: str | None = None, after_seq: int = 0) -> TurnView:
        envs: list[Envelope] = []
        try:
            async for env in self.follow(conversation_id, message_id, after_seq):
                envs.append(env)
        except StreamUnavailable as exc:
            return _replace(fold(envs, self.target), status="failed",
                            error={"code": "client.unavailable", "message": str(exc)})
        return fold(envs, self.target)


class M25NoCursorAhead(ReadLoop):
    """M25: the live loop never compares its cursor with ``meta.last_seq``: after a restart that
    lost a suffix the consumer waits silently forever -> INV-25."""

    async def _wakeup_checks(self) -> Notice | None:  # type: ignore[override]
        notice = await super()._wakeup_checks()
        return None if notice is not None and notice.code == "cursor_ahead" else notice


class M27RetargetOnlyAtConnect(ReadLoop):
    """M27: ``follow=1`` is honoured at connect only; the live loop ends at the target's terminal
    instead of continuing into the next turn: a follower must reconnect and races it -> INV-27."""

    async def connect(self) -> dict[str, Any]:  # type: ignore[override]
        info = await super().connect()
        self.follow = False
        return info


class M28CancelEverywhere(TurnRelay):
    """M28: "Stop" cancels the current message of every active conversation (claudex's
    cross-chat cancel) -> INV-28."""

    async def cancel(self, conversation_id: str, message_id: str) -> str:  # type: ignore[override]
        for conv in [c.decode() if isinstance(c, bytes) else c
                     for c in await self.store.redis.zrange(self.store.active_key, 0, -1)]:
            meta = await self.store.meta(conv)
            if meta and meta.get("current_message_id"):
                await self.store.request_cancel(conv, meta["current_message_id"])
        return await super().cancel(conversation_id, message_id)


def m29_status_from_tasks(relay: TurnRelay, conv: str) -> dict[str, Any]:
    """M29: ``producer_live`` from this process's task map, not from the lease in Redis: every
    other relay process answers "not live" -> INV-29."""
    live = any(t.get_name().startswith(f"relay:{conv}:") and not t.done() for t in relay._tasks)
    return {"producer_live": live}


def m29_liveness(relay: TurnRelay) -> Callable[[str], Awaitable[bool]]:
    """M29 as the app's ``liveness`` hook (``make_app(liveness=...)``, harness ``liveness=``): the
    app process, which runs no turn itself, reports every turn as not live."""
    async def live(conv: str) -> bool:
        return bool(m29_status_from_tasks(relay, conv)["producer_live"])
    return live


class M30LeakyReadLoop(ReadLoop):
    """M30: the blocking connection is never closed when a consumer ends: ``CLIENT LIST`` grows
    with every connect/disconnect cycle -> INV-30.

    Only the close is broken. The loop still ends (``closed``): a loop that went on after its close
    opened a new connection at its next read, which its task then dropped unclosed (the "Unclosed client
    session" warning a later test of the worker got). Every connection it opens is registered for
    :func:`close_leaked`, so the teardown reaches all of them, not only the ones dropped at close."""

    def _new_blocking(self) -> Any:
        client = super()._new_blocking()
        _LEAKED.append(client)  # held from birth: the test's teardown closes it whatever path drops it
        return client

    async def aclose(self) -> None:  # type: ignore[override]
        self.closed = True
        self._blocking = None  # dropped from the loop, still open and never closed by it


_LEAKED: list[Any] = []


async def close_leaked() -> None:
    """Test teardown for M30: close every connection the mutant opened. Run it in their event loop once
    no M30 loop reads any more (after the app that ran them has ended its streams)."""
    while _LEAKED:
        try:
            await _LEAKED.pop().aclose()
        except Exception:
            pass


class M31NoSlowClientCut(SSEPolicy):
    """M31: a client that stops reading is never cut: it holds a consumer slot (and its blocking
    connection) forever -> INV-31."""

    cut_slow_clients = False


class M32KeepaliveOnDataOnly(SSEPolicy):
    """M32: no keepalive timer: an idle stream (stalled source, Redis outage) sends nothing and
    proxies' idle timeouts cut it -> INV-32."""

    keepalive_timer = False


class _NoRebaseRun(_Run):
    async def _rebase(self, call: Any, last_seq: int, deadline: float) -> None:  # type: ignore[override]
        return None  # stop on ROLLBACK as before `rebase` existed: no error, no epoch rotation


def m25_no_rebase(relay: TurnRelay) -> TurnRelay:
    """M25 no rebase: the relay stops on ``ROLLBACK`` without the ``rebase`` script: the message never
    ends (no ``store.rollback`` error) and the epoch is kept -> INV-25 /
    docs/stream-design.md#restart-and-lost-suffix."""
    relay.run_class = _NoRebaseRun
    return relay


class M25RebaseKeepsEpoch(StreamStore):
    """M25 rebase without rotation: the ``store.rollback`` error is written under the old epoch, at a
    lost seq a consumer already saw with other bytes -> two payloads for one ``(epoch, seq)`` (INV-25)."""

    async def rebase(self, conv: str, mid: str, stream_id: str, *, old_epoch: str, new_epoch: str,  # type: ignore[override]
                     **kw: Any) -> Any:
        return await super().rebase(conv, mid, stream_id, old_epoch=old_epoch, new_epoch=old_epoch, **kw)


# Script mutants (the outcome cells of docs/stream-design.md#script-outcome-cells) --------------------
def _patched_script(store: StreamStore, name: str, old: str, new: str) -> None:
    from pytest_cbchaos.stream.store import _lua

    source = _lua(name)
    if old not in source:
        raise RuntimeError(f"mutant of {name}.lua: {old!r} not found (the script changed; update the mutant)")
    store._scripts[name] = store.redis.register_script(source.replace(old, new))


class M14SingleEventResendStore(StreamStore):
    """M14: the append script recognises a resend only for batched calls: the identical resend of an
    applied single-event call (a lone terminal, a control event) answers FENCED/CONFLICT instead of
    DUP, and the relay stops without learning that its turn ended -> INV-14/2."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        _patched_script(self, "append", "if first_step <= ls then", "if first_step <= ls and c > 1 then")


class M14FenceHolderStore(StreamStore):
    """M14 (lease side): ``renew`` answers FENCED to the producer that holds the lease, so a healthy
    producer stops with its lease intact -> INV-14 (a lapsed lease would excuse it; this one never lapsed)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        _patched_script(self, "renew", "if redis.call('GET', lease) ~= ARGV[1] then",
                        "if redis.call('GET', lease) == ARGV[1] then")


class M26AgeFromCreationStore(StreamStore):
    """M26: age-based trim measures a turn's age from its creation, not its end: a long turn that just
    finished is trimmed at once -> INV-26 (a consumer still reading it finds it gone)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        _patched_script(self, "trim", "tonumber(r.updated_ms or '0') < cutoff", "tonumber(r.created_ms or '0') < cutoff")


# Resume-route mutants: off by one at a page boundary (tests/stream/test_resume_routes.py) -----------
class M1InclusiveAfterStore(StreamStore):
    """M1 inclusive bound: a read "after seq N" starts at N, so every resumed page repeats the
    entry its cursor names: ``read_all`` repeats each 1000th entry and a consumer paging
    ``/events?after_seq=`` gets its cursor's entry again -> INV-2 (the read loop drops it)."""

    async def xrange(self, conv: str, after: int = 0, count: int | None = None,  # type: ignore[override]
                     client: Any = None) -> list[Envelope]:
        rows = await (client or self.redis).xrange(self.keys(conv)[1], min=f"{after}-0" if after > 0 else "-",
                                                   max="+", count=count)
        return [Envelope.from_entry(conv, eid, fields) for eid, fields in rows]


class M1PageSkipReadLoop(ReadLoop):
    """M1 page skip: after a full page the next read starts one past the cursor, so the first
    entry of every following page is skipped (the SSE route ends with a ``gap`` notice) -> INV-1/6."""

    _full = False

    async def _read(self) -> list[Envelope]:  # type: ignore[override]
        if not self._full:
            page = await super()._read()
        else:
            page = await self.store.xrange(self.conv, self.cursor + 1, self.cfg.page_size)
        self._full = len(page) == self.cfg.page_size
        return page
