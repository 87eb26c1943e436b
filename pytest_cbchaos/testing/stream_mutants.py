"""Deliberately broken producers and consumers for the stream checker's own tests (spec §5 mutants).

Each one breaks exactly one rule; `tests/stream/test_mutants.py` asserts the checker catches it.
"""

from __future__ import annotations

from typing import Any

from pytest_cbchaos.stream.envelope import Envelope
from pytest_cbchaos.stream.reader import ReadLoop
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
