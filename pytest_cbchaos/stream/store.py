"""Redis side of the stream: keys, the Lua scripts, reads, records (docs/stream-design.md#redis-layout).

Every producer write is one script call (atomic, one round trip); consumers only read.
"""

from __future__ import annotations

import inspect
import secrets
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Sequence

import redis.asyncio as aioredis

from pytest_cbchaos.faults.clock import SYSTEM_CLOCK, Clock
from pytest_cbchaos.stream.config import StreamConfig
from pytest_cbchaos.stream.envelope import Envelope, check_id, record_from_entries

SCRIPTS = ("open_turn", "append", "renew", "reap", "trim", "rebase")
RECORD_ATTRS = ("status", "first_seq", "last_seq", "terminal_seq", "terminal_kind", "stream_id", "error_code",
                "error_message", "cancel", "created_ms", "updated_ms")
INT_ATTRS = {"first_seq", "last_seq", "terminal_seq", "created_ms", "updated_ms"}


class StoreUnavailable(RuntimeError):
    """The store could not be reached before the deadline (HTTP 503)."""


class UnsupportedServer(RuntimeError):
    """Redis < 6.2 or without scripting."""


def _lua(name: str) -> str:
    pkg = resources.files("pytest_cbchaos.stream") / "lua"
    return (pkg / "_common.lua").read_text() + "\n" + (pkg / f"{name}.lua").read_text()


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(frozen=True)
class ScriptReply:
    status: str
    first_seq: int
    last_seq: int
    detail: str

    @classmethod
    def parse(cls, raw: Sequence[Any]) -> "ScriptReply":
        return cls(_s(raw[0]), int(raw[1]), int(raw[2]) if len(raw) > 2 and _s(raw[2]).lstrip("-").isdigit() else 0,
                   _s(raw[3]) if len(raw) > 3 else "")


@dataclass(frozen=True)
class OpenReply:
    status: str  # OK, DUP, BUSY
    first_seq: int
    epoch: str
    stream_id: str
    message_status: str


@dataclass(frozen=True)
class AppendCall:
    """One append, frozen at creation so a retry resends it byte for byte."""

    conversation_id: str
    message_id: str
    stream_id: str
    first_step: int
    prev_seq: int
    epoch: str
    events: tuple[tuple[str, str, int, bytes], ...]  # kind, class, ts_ms, payload bytes
    error_code: str = ""
    error_message: str = ""

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(e[0] for e in self.events)

    @property
    def is_terminal(self) -> bool:
        return bool(self.events) and self.events[-1][1] == "terminal"


Hook = Callable[[str, tuple[str, ...]], Any]


class StreamStore:
    """The conversation keys and scripts over one ``redis.asyncio.Redis`` client."""

    def __init__(self, client: aioredis.Redis, config: StreamConfig | None = None, clock: Clock | None = None) -> None:
        self.redis = client
        self.clock = clock or SYSTEM_CLOCK  # the wall time written into records and trim cutoffs
        self.config = config or StreamConfig()
        self.prefix = self.config.prefix
        self._scripts = {name: client.register_script(_lua(name)) for name in SCRIPTS}
        self._own_consumer = client.register_script(_lua("own_consumer"))
        self.before_call: Hook | None = None  # test hook: armed before a chosen script call

    # -- keys -----------------------------------------------------------------------------
    def keys(self, conv: str) -> list[str]:
        base = f"{self.prefix}{{{conv}}}:"
        return [base + k for k in ("meta", "log", "msgs", "idem", "lease")]

    @property
    def active_key(self) -> str:
        return self.prefix + "active"

    def consumer_key(self, client_id: str) -> str:
        return f"{self.prefix}consumer:{client_id}"

    async def own_consumer(self, client_id: str, token: str) -> str | None:
        """Refresh ``client_id``'s ownership for the connection ``token`` unless another connection
        owns it; returns that owner's token, or ``None`` when ``token`` owns it now (atomic)."""
        owner = await self._own_consumer(keys=[self.consumer_key(client_id)],
                                         args=[token, int(3 * self.config.heartbeat_s * 1000)])
        return None if owner is None else _s(owner)

    async def _call(self, name: str, conv: str, args: list[Any], kinds: tuple[str, ...] = ()) -> list[Any]:
        if self.before_call is not None:
            r = self.before_call(name, kinds)
            if inspect.isawaitable(r):
                await r
        return await self._scripts[name](keys=self.keys(conv), args=args)

    async def check_server(self) -> None:
        info = await self.redis.info("server")
        version = tuple(int(x) for x in str(info.get("redis_version", "0.0")).split(".")[:2])
        if version < (6, 2):
            raise UnsupportedServer(f"redis {info.get('redis_version')} < 6.2: XRANGE exclusive bounds and XTRIM MINID needed")

    async def durability(self) -> str:
        try:
            cfg = await self.redis.config_get("appendonly")
            cfg2 = await self.redis.config_get("appendfsync")
            if _s(cfg.get("appendonly", "no")) == "yes" and _s(cfg2.get("appendfsync", "")) == "always":
                return "durable"
        except Exception:
            pass
        return "best_effort"

    # -- producer scripts -------------------------------------------------------------------
    async def open_turn(self, conv: str, mid: str, stream_id: str, *, payload: bytes, superseded_payload: bytes,
                        ts_ms: int, durability: str = "best_effort", epoch: str | None = None,
                        reaper_id: str | None = None) -> OpenReply:
        check_id("conversation_id", conv)
        check_id("message_id", mid)
        now = int(self.clock.time() * 1000)
        raw = await self._call("open_turn", conv, [
            mid, stream_id, epoch or secrets.token_hex(8), int(self.config.lease_ttl_s * 1000), now,
            int(self.config.retention_s * 1000), ts_ms, payload, reaper_id or f"reaper:{secrets.token_hex(8)}",
            superseded_payload, durability], ("turn_started",))
        return OpenReply(_s(raw[0]), int(raw[1]), _s(raw[2]), _s(raw[3]), _s(raw[4]))

    async def append(self, call: AppendCall) -> ScriptReply:
        args: list[Any] = [call.stream_id, call.first_step, len(call.events), call.prev_seq, call.epoch,
                           call.message_id, int(self.clock.time() * 1000), int(self.config.retention_s * 1000),
                           self.config.max_batch, self.config.max_batch_bytes, call.error_code, call.error_message]
        for kind, cls, ts, payload in call.events:
            args += [kind, cls, ts, payload]
        return ScriptReply.parse(await self._call("append", call.conversation_id, args, call.kinds))

    async def renew(self, conv: str, stream_id: str) -> ScriptReply:
        raw = await self._call("renew", conv, [stream_id, int(self.config.lease_ttl_s * 1000),
                                               int(self.config.retention_s * 1000)])
        return ScriptReply.parse(raw)

    async def reap(self, conv: str, mid: str | None, writer: str, payload: bytes, *, new_epoch: str = "") -> ScriptReply:
        raw = await self._call("reap", conv, [mid or "", writer, int(self.clock.time() * 1000), payload,
                                              int(self.clock.time() * 1000), int(self.config.retention_s * 1000), new_epoch],
                               ("cancelled",))
        return ScriptReply.parse(raw)

    async def rebase(self, conv: str, mid: str, stream_id: str, *, old_epoch: str, new_epoch: str, last_seq: int,
                     step: int, ts_ms: int, payload: bytes, error_code: str, error_message: str) -> ScriptReply:
        """After ``ROLLBACK``: rotate ``old_epoch`` to ``new_epoch`` (only while ``meta.last_seq == last_seq``)
        and end ``mid`` with the error ``payload`` if its record survived. Resending is safe: a rebase
        already applied answers ``EPOCH`` with detail ``new_epoch``."""
        raw = await self._call("rebase", conv, [mid, stream_id, old_epoch, new_epoch, last_seq, step, ts_ms, payload,
                                                int(self.clock.time() * 1000), int(self.config.retention_s * 1000),
                                                error_code, error_message], ("error",))
        return ScriptReply.parse(raw)

    async def trim(self, conv: str, *, keep_last: int | None = None, older_than_s: float | None = None) -> ScriptReply:
        if keep_last is None and older_than_s is None:
            raise ValueError("trim: give keep_last or older_than_s")
        cutoff = "" if older_than_s is None else int((self.clock.time() - older_than_s) * 1000)
        raw = await self._call("trim", conv, ["" if keep_last is None else int(keep_last), cutoff,
                                              int(self.config.retention_s * 1000)])
        return ScriptReply.parse(raw)

    # -- cancel flag, active set --------------------------------------------------------------
    async def request_cancel(self, conv: str, mid: str) -> None:
        await self.redis.hset(self.keys(conv)[2], f"{mid}|cancel", "1")

    async def cancel_requested(self, conv: str, mid: str) -> bool:
        return bool(await self.redis.hget(self.keys(conv)[2], f"{mid}|cancel"))

    async def active_add(self, conv: str) -> None:
        deadline = int((self.clock.time() + self.config.lease_ttl_s) * 1000)
        await self.redis.zadd(self.active_key, {conv: deadline})

    async def active_remove(self, conv: str) -> None:
        await self.redis.zrem(self.active_key, conv)

    async def active_due(self, now_ms: int | None = None) -> list[str]:
        now_ms = int(self.clock.time() * 1000) if now_ms is None else now_ms
        return [_s(c) for c in await self.redis.zrangebyscore(self.active_key, "-inf", now_ms)]

    # -- reads ---------------------------------------------------------------------------------
    async def meta(self, conv: str, client: aioredis.Redis | None = None) -> dict[str, Any] | None:
        raw = await (client or self.redis).hgetall(self.keys(conv)[0])
        if not raw:
            return None
        d = {_s(k): _s(v) for k, v in raw.items()}
        for k in ("last_seq", "floor_seq", "created_ms"):
            if k in d:
                d[k] = int(d[k])
        return d

    async def lease_holder(self, conv: str, client: aioredis.Redis | None = None) -> str | None:
        v = await (client or self.redis).get(self.keys(conv)[4])
        return _s(v) if v is not None else None

    async def record(self, conv: str, mid: str, client: aioredis.Redis | None = None) -> dict[str, Any] | None:
        vals = await (client or self.redis).hmget(self.keys(conv)[2], [f"{mid}|{a}" for a in RECORD_ATTRS])
        if vals[0] is None:
            return None
        out: dict[str, Any] = {}
        for a, v in zip(RECORD_ATTRS, vals):
            if v is not None:
                out[a] = int(v) if a in INT_ATTRS else _s(v)
        return out

    async def records(self, conv: str) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(self.keys(conv)[2])
        out: dict[str, dict[str, Any]] = {}
        for k, v in raw.items():
            mid, _, attr = _s(k).rpartition("|")
            out.setdefault(mid, {})[attr] = int(v) if attr in INT_ATTRS else _s(v)
        return {m: r for m, r in out.items() if "status" in r}

    async def xrange(self, conv: str, after: int = 0, count: int | None = None,
                     client: aioredis.Redis | None = None) -> list[Envelope]:
        rows = await (client or self.redis).xrange(self.keys(conv)[1], min=f"({after}-0" if after > 0 else "-",
                                                   max="+", count=count)
        return [Envelope.from_entry(conv, eid, fields) for eid, fields in rows]

    async def read_all(self, conv: str) -> list[Envelope]:
        out: list[Envelope] = []
        after = 0
        while True:
            page = await self.xrange(conv, after, 1000)
            out += page
            if len(page) < 1000:
                return out
            after = page[-1].seq

    async def rebuild_record(self, conv: str, mid: str) -> dict[str, Any] | None:
        """Recompute a message record from the log (the record is a projection)."""
        return record_from_entries(await self.read_all(conv), mid)
