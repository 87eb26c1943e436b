"""Deliberately broken producers and consumers for the stream checker's own tests (spec §5 mutants).

Each one breaks exactly one rule; `tests/stream/test_mutants.py` asserts the checker catches it.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from pytest_cbchaos.stream.envelope import Envelope, encode_payload, kind_class
from pytest_cbchaos.stream.reader import Notice, ReadLoop
from pytest_cbchaos.stream.reaper import Reaper
from pytest_cbchaos.stream.relay import TurnRelay, _Run
from pytest_cbchaos.stream.store import StreamStore


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


class M13NoFencingStore(StreamStore):
    """M13: no fencing check: a refused (FENCED/CLOSED) append is written anyway -> INV-16/3."""

    async def append(self, call: Any):  # type: ignore[override]
        reply = await super().append(call)
        if reply.status not in ("FENCED", "CLOSED"):
            return reply
        meta, log = self.keys(call.conversation_id)[:2]
        last = int(await self.redis.hget(meta, "last_seq"))
        for i, (kind, cls, ts, payload) in enumerate(call.events):
            last += 1
            await self.redis.xadd(log, {"m": call.message_id, "s": call.stream_id, "n": call.first_step + i,
                                        "k": kind, "c": cls, "t": ts, "x": call.epoch, "p": payload}, id=f"{last}-0")
        await self.redis.hset(meta, "last_seq", last)
        return type(reply)("OK", last - len(call.events) + 1, last, "")


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
