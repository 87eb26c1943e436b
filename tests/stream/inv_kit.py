"""Helpers for the consumer-protocol invariant tests (INV-18, 21, 22, 27, 31, 32): the relay and
the SSE app on real Redis, the consumer's Redis link through the kit's `cbchaos_redis_proxy`, the
app behind a kit proxy named ``stream-http``; raw SSE connections that keep every frame."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.stream import Reaper, ScriptedSource, StreamConfig, StreamStore, TurnRelay
from pytest_cbchaos.stream.envelope import Envelope
from pytest_cbchaos.stream.http import STATE, SSEPolicy, make_app
from pytest_cbchaos.stream.reader import ReadLoop
from pytest_cbchaos.stream.sources import SourceEvent
from tests.stream.stream_helpers import run_bounded as _run_bounded


def redis_client(host: str, port: int, password: str | None, timeout: float = 1.0) -> aioredis.Redis:
    return aioredis.Redis(host=host, port=port, password=password, socket_timeout=timeout,
                          socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))


async def wait_until(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> None:
    """Poll ``pred`` (sync or async) until true; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        r = pred()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)


class GatedSource(ScriptedSource):
    """``first`` text deltas, then waits for ``gate``, then ``rest`` deltas and ``complete``."""

    def __init__(self, first: int, rest: int, *, delay_s: float = 0.0, size: int = 8) -> None:
        super().__init__([])
        self.first, self.rest, self.delay, self.size = first, rest, delay_s, size
        self.gate = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[SourceEvent]:  # type: ignore[override]
        for i in range(self.first + self.rest):
            if i == self.first:
                await self.gate.wait()
            if self.aborted.is_set():
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            yield SourceEvent("text_delta", {"part_id": "p", "text": f"{i:06d}".ljust(self.size, ".")})
        yield SourceEvent("complete", {"finish_reason": "stop", "usage": {}})


@dataclass
class Frame:
    """One SSE frame as received: an event (``event``, ``id``, ``data``) or a comment."""

    kind: str  # "event" or "comment"
    at: float
    event: str | None = None
    id: str | None = None
    data: str = ""
    text: str = ""

    @property
    def envelope(self) -> Envelope | None:
        return Envelope.from_json(self.data) if self.kind == "event" and self.event == "stream" else None


@dataclass
class RawConn:
    """One SSE connection, read raw until EOF (or the task is cancelled)."""

    url: str
    token: str
    conv: str
    params: dict[str, str] = field(default_factory=dict)
    last_event_id: str | None = None
    frames: list[Frame] = field(default_factory=list)
    status: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None

    def start(self) -> "RawConn":
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        # no timer of its own: a stalled process would outlast a fixed connect bound; the caller's
        # lag-aware wait (sched_lag.wait_within_async) bounds the connection, close() ends it
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as s:
                async with s.get(f"{self.url}/v1/conversations/{self.conv}/stream", params=self.params,
                                 headers=headers) as resp:
                    self.status = resp.status
                    if resp.status != 200:
                        return
                    event: str | None = None
                    ident: str | None = None
                    data: list[str] = []
                    async for raw in resp.content:
                        line = raw.decode("utf-8").rstrip("\r\n")
                        now = time.monotonic()
                        if line == "":
                            if data or event or ident is not None:
                                self.frames.append(Frame("event", now, event or "message", ident, "\n".join(data)))
                            event, ident, data = None, None, []
                        elif line.startswith(":"):
                            self.frames.append(Frame("comment", now, text=line[1:].strip()))
                            if line.startswith(": ready"):
                                self.ready.set()
                        elif line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("id:"):
                            ident = line[3:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].lstrip(" "))
        except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self.ended.set()

    @property
    def envelopes(self) -> list[Envelope]:
        return [e for e in (f.envelope for f in self.frames) if e is not None]

    @property
    def notices(self) -> list[Frame]:
        return [f for f in self.frames if f.kind == "event" and f.event == "cbchaos"]

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


def notice_code(frame: Frame) -> str | None:
    try:
        return json.loads(frame.data).get("code")
    except ValueError:
        return None


class HttpKit:
    """Relay (direct) + reaper + SSE app (consumer side through ``cbchaos_redis_proxy``) on an
    allocated port, behind a ``stream-http`` proxy of the kit's Toxiproxy-compatible server.

    ``after_app`` runs in the kit's loop once the app has ended every stream (each handler closed its
    read loop): the teardown of a ``loop_class`` that keeps connections of its own (M30). Run from the
    scenario instead, it came before the streams still open had ended, and missed what they dropped."""

    def __init__(self, proc: Any, redis_proxy: Any, toxiproxy: Any, cfg: StreamConfig, *,
                 policy: SSEPolicy | None = None, loop_class: type[ReadLoop] = ReadLoop,
                 after_app: Callable[[], Awaitable[None]] | None = None) -> None:
        self.proc, self.redis_proxy, self.toxiproxy, self.cfg = proc, redis_proxy, toxiproxy, cfg
        self.policy, self.loop_class, self.after_app = policy, loop_class, after_app
        self.token = secrets.token_hex(16)

    async def __aenter__(self) -> "HttpKit":
        p = self.proc
        self.pclient = redis_client(p.host, p.port, p.password)
        self.cclient = redis_client(self.redis_proxy.listen_host, self.redis_proxy.listen_port, p.password)
        self.admin = redis_client(p.host, p.port, p.password, 2.0)
        self.pstore, self.cstore = StreamStore(self.pclient, self.cfg), StreamStore(self.cclient, self.cfg)
        self.astore = StreamStore(self.admin, self.cfg)
        self.relay = TurnRelay(self.pstore, self.cfg)
        self.reaper = Reaper(StreamStore(self.admin, self.cfg))
        self.reaper.start()
        self.app = make_app(self.cstore, self.token, relay=self.relay, policy=self.policy, loop_class=self.loop_class)
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        self.lease = allocate_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.lease.port).start()
        self.direct_url = f"http://127.0.0.1:{self.lease.port}"
        self.http_proxy = self.toxiproxy.create_proxy("stream-http", f"127.0.0.1:{self.lease.port}")
        self.http_url = f"http://{self.http_proxy.listen_host}:{self.http_proxy.listen_port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.relay.aclose()
        await self.reaper.stop()
        await self.runner.cleanup()
        if self.after_app is not None:
            await self.after_app()
        self.http_proxy.close()
        self.lease.release()
        for c in (self.pclient, self.cclient, self.admin):
            await c.aclose()

    @property
    def consumers(self) -> int:
        return self.app[STATE]["consumers"]

    def conn(self, conv: str, *, via_proxy: bool = False, **params: str) -> RawConn:
        return RawConn(self.http_url if via_proxy else self.direct_url, self.token, conv, dict(params)).start()


def run_bounded(coro: Any, timeout: float = 60.0) -> Any:
    return _run_bounded(coro, timeout)


def no_violations(bad: list[str]) -> None:
    """Fail with every violation, one per line (plain message: no assertion-rewrite diff)."""
    if bad:
        raise AssertionError(f"{len(bad)} violation(s):\n" + "\n".join(bad))
