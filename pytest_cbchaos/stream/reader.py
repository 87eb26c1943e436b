"""The consumer read loop shared by the SSE endpoint and `LogReader` (docs/stream-design.md#connect).

One cursor flows from `XRANGE` replay into `XREAD BLOCK` (never `$`, never pub/sub); entries are
yielded first and the cursor advances after, so the cursor is never ahead of delivery.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import redis.asyncio as aioredis
import redis.exceptions as rexc

from pytest_cbchaos.servers.redis import no_async_retry
from pytest_cbchaos.stream.cluster import node_link, not_serving
from pytest_cbchaos.stream.envelope import Envelope
from pytest_cbchaos.stream.store import StreamStore


class StreamConnectError(Exception):
    """A connect-time answer other than a stream (HTTP status + JSON body)."""

    def __init__(self, status: int, code: str, **detail: Any) -> None:
        super().__init__(f"{status} {code} {detail}")
        self.status, self.code, self.detail = status, code, detail

    @property
    def body(self) -> dict[str, Any]:
        return {"code": self.code, **self.detail}


@dataclass(frozen=True)
class Notice:
    """A connection notice: never an entry, never carries a seq, never terminal."""

    code: str
    detail: dict[str, Any] = field(default_factory=dict)


REDIS_ERRORS = (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, ConnectionError, OSError,
                asyncio.TimeoutError)


def _reraise_swallowed_cancel() -> None:
    """A cancel that reached a Redis read can come back as a timeout or connection error (a read
    timeout racing the cancel on Python 3.11). If this task still has a cancel pending, honour it
    instead of treating the error as an outage: a cancelled consumer must stop, not reconnect."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class ReadLoop:
    def __init__(self, store: StreamStore, conversation_id: str, *, after_seq: int = 0,
                 message_id: str | None = None, epoch: str | None = None, follow: bool = False,
                 client_id: str | None = None) -> None:
        self.store, self.cfg = store, store.config
        self.conv = conversation_id
        self.cursor = after_seq
        self.target = message_id
        self.epoch = epoch
        self.follow = follow
        self.client_id = client_id
        self.token = secrets.token_hex(8)
        self._blocking: aioredis.Redis | None = None
        self.ended_by: str | None = None
        self.closed = False

    # -- connect -------------------------------------------------------------------------------
    async def connect(self) -> dict[str, Any]:
        try:
            meta = await self.store.meta(self.conv)
            if meta is None:
                if self.epoch:
                    raise StreamConnectError(410, "stream_lost", epoch=self.epoch)
                raise StreamConnectError(404, "unknown_conversation", conversation_id=self.conv)
            if self.epoch and self.epoch != meta["epoch"]:
                raise StreamConnectError(409, "epoch_changed", epoch=meta["epoch"])
            self.epoch = meta["epoch"]
            if self.cursor > meta["last_seq"]:
                raise StreamConnectError(409, "cursor_ahead", last_seq=meta["last_seq"])
            if self.cursor < meta.get("floor_seq", 0):
                raise StreamConnectError(410, "truncated", floor_seq=meta["floor_seq"])
            self.target = self.target or meta.get("current_message_id")
            rec = await self.store.record(self.conv, self.target) if self.target else None
            if rec is None:
                raise StreamConnectError(404, "unknown_message", message_id=self.target)
            if rec["status"] != "in_progress" and rec["terminal_seq"] <= self.cursor:
                cur = meta.get("current_message_id")
                if self.follow and cur and cur != self.target:
                    self.target = cur
                else:
                    raise StreamConnectError(204, "finished", terminal_seq=rec["terminal_seq"],
                                             terminal_kind=rec["terminal_kind"])
            if self.client_id:
                await self.store.redis.set(self.store.consumer_key(self.client_id), self.token,
                                           px=int(3 * self.cfg.heartbeat_s * 1000))
        except REDIS_ERRORS as exc:
            raise StreamConnectError(503, "store_unavailable", error=type(exc).__name__) from exc
        return {"epoch": self.epoch, "cursor": self.cursor, "target": self.target}

    def _new_blocking(self) -> aioredis.Redis:
        kw = node_link(self.store.redis, self.store.keys(self.conv)[1])
        kw["socket_timeout"] = self.cfg.block_ms / 1000 + 2
        kw.setdefault("socket_connect_timeout", 2.0)
        name = f"cbchaos-consumer:{self.client_id or self.token}"
        # no client-level retries: redis-py's default (3, backoff up to seconds) would hide a reset
        # from the loop, which has its own reconnect backoff and must send store_unavailable at once
        return aioredis.Redis(**kw, client_name=name, single_connection_client=True, retry=no_async_retry())

    async def aclose(self) -> None:
        """End the loop for good: ``items()`` stops even if a read swallowed its cancellation."""
        self.closed = True
        await self._drop_blocking()

    async def _drop_blocking(self) -> None:
        if self._blocking is not None:
            try:
                await self._blocking.aclose()
            except Exception:
                pass
            self._blocking = None

    # -- reads ---------------------------------------------------------------------------------
    async def _read(self) -> list[Envelope]:
        page = await self.store.xrange(self.conv, self.cursor, self.cfg.page_size)
        if page:
            return page
        if self.closed:
            return []  # never open a blocking connection once closed (the loop ends at its next check)
        if self._blocking is None:
            self._blocking = self._new_blocking()
        key = self.store.keys(self.conv)[1]
        try:
            raw = await self._blocking.xread({key: f"{self.cursor}-0"}, count=self.cfg.page_size,
                                             block=self.cfg.block_ms)
        except rexc.ResponseError as exc:
            if not not_serving(exc):
                raise
            await self._drop_blocking()  # the slot moved (cluster failover): the next read reconnects
            return []
        rows: list[Any] = []
        if isinstance(raw, dict):
            for v in raw.values():
                rows += v[0] if v and isinstance(v[0], list) else v
        elif raw:
            for _k, entries in raw:
                rows += entries
        return [Envelope.from_entry(self.conv, eid, f) for eid, f in rows]

    async def _wakeup_checks(self) -> Notice | None:
        meta = await self.store.meta(self.conv)
        if meta is None:
            return Notice("stream_lost")
        if meta["epoch"] != self.epoch:
            return Notice("epoch_changed", {"epoch": meta["epoch"]})
        if self.cursor > meta["last_seq"]:  # a lost suffix (restart without persistence): never wait silently
            return Notice("cursor_ahead", {"last_seq": meta["last_seq"]})
        if self.cursor < meta.get("floor_seq", 0):
            return Notice("truncated", {"floor_seq": meta["floor_seq"]})
        if self.client_id and await self.store.own_consumer(self.client_id, self.token) is not None:
            return Notice("superseded")
        return None

    async def items(self) -> AsyncIterator[Envelope | Notice]:
        """Entries after the cursor through the target's terminal; notices; ends on the stop rule."""
        try:
            async for item in self._items():
                yield item
        finally:
            if self.closed:  # closed while a read was in flight: that read may have opened a connection
                await self._drop_blocking()

    async def _items(self) -> AsyncIterator[Envelope | Notice]:
        outage_since: float | None = None
        delay = 0.1
        follow_until: float | None = None
        gap_retry = False
        while not self.closed:
            try:
                notice = await self._wakeup_checks()
                if notice is not None:
                    self.ended_by = notice.code
                    yield notice
                    return
                page = await self._read()
            except REDIS_ERRORS:
                _reraise_swallowed_cancel()
                await self._drop_blocking()
                if self.closed:
                    return
                now = time.monotonic()
                if outage_since is None:
                    outage_since = now
                    yield Notice("store_unavailable")
                if now - outage_since > self.cfg.outage_close_s:
                    self.ended_by = "outage"
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            outage_since, delay = None, 0.1
            if not page and follow_until is not None and time.monotonic() > follow_until:
                self.ended_by = "follow_idle"
                return
            for env in page:
                if env.seq <= self.cursor:
                    continue  # dedup after a reconnect re-read
                if env.seq > self.cursor + 1:
                    if not gap_retry:
                        gap_retry = True
                        break  # re-read once from the cursor
                    meta = await self.store.meta(self.conv)
                    code = "truncated" if meta and self.cursor < meta.get("floor_seq", 0) else "gap"
                    self.ended_by = code
                    yield Notice(code, {"cursor": self.cursor, "next": env.seq})
                    return
                gap_retry = False
                if env.epoch != self.epoch:
                    self.ended_by = "epoch_changed"
                    yield Notice("epoch_changed", {"epoch": env.epoch})
                    return
                if follow_until is not None and env.kind == "turn_started":
                    self.target, follow_until = env.message_id, None
                yield env
                self.cursor = env.seq  # deliver, then advance
                if env.is_terminal and env.message_id == self.target:
                    if not self.follow:
                        self.ended_by = "terminal"
                        return
                    meta = await self.store.meta(self.conv)
                    cur = meta.get("current_message_id") if meta else None
                    if cur and cur != self.target:
                        rec = await self.store.record(self.conv, cur)
                        if rec and rec["first_seq"] > env.seq:
                            self.target = cur
                            continue
                    follow_until = time.monotonic() + self.cfg.follow_idle_s


class LogReader:
    """The consumer semantics without HTTP: ``follow`` yields envelopes (oracles, tests)."""

    def __init__(self, store: StreamStore) -> None:
        self.store = store
        self.last_loop: ReadLoop | None = None

    async def follow(self, conversation_id: str, message_id: str | None = None, after_seq: int = 0,
                     follow: bool = False, epoch: str | None = None) -> AsyncIterator[Envelope]:
        loop = ReadLoop(self.store, conversation_id, after_seq=after_seq, message_id=message_id, epoch=epoch,
                        follow=follow)
        self.last_loop = loop
        try:
            try:
                await loop.connect()
            except StreamConnectError as exc:
                if exc.status == 204:
                    return
                raise
            async for item in loop.items():
                if isinstance(item, Envelope):
                    yield item
        finally:
            await loop.aclose()

    async def collect(self, conversation_id: str, **kw: Any) -> list[Envelope]:
        return [e async for e in self.follow(conversation_id, **kw)]
