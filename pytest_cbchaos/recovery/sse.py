"""The ``/event`` stream: parser and a reconnecting reader without a read timeout (docs/recovery-design.md#sse-client).

The reader never times out a read. Stream health is judged from outside by the watchdog's
timer (:meth:`EventStream.maintain`), which closes a silent connection (no byte for
``sse_silence_timeout``) or one never confirmed by ``server.connected`` within
``subscribe_timeout``. A tick never closes a healthy stream.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import OrderedDict
from typing import Any, Callable

import aiohttp

from pytest_cbchaos.recovery.config import RecoveryConfig
from pytest_cbchaos.recovery.handle import ServerTarget


class SSEParser:
    """Incremental ``text/event-stream`` parser: yields the joined ``data`` of each event."""

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        out: list[str] = []
        self._buf += chunk
        while True:
            idx = self._buf.find(b"\n")
            if idx < 0:
                break
            line = self._buf[:idx].rstrip(b"\r").decode("utf-8", errors="replace")
            self._buf = self._buf[idx + 1:]
            if line == "":
                if self._data:
                    out.append("\n".join(self._data))
                    self._data = []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data.append(value)
            # id:, event:, retry: and unknown fields are ignored (opencode keeps its id in JSON)
        return out


class EventStream:
    """One logical subscription to ``/event``, kept across reconnects."""

    def __init__(self, target: ServerTarget, config: RecoveryConfig, session: aiohttp.ClientSession, *,
                 on_event: Callable[[dict[str, Any]], None],
                 on_subscribed: Callable[[int], None] | None = None,
                 on_drop: Callable[[str], None] | None = None,
                 is_dead: Callable[[], bool] | None = None,
                 on_unavailable: Callable[[str], None] | None = None) -> None:
        self.target, self.config, self.session = target, config, session
        self.on_event, self.on_subscribed, self.on_drop = on_event, on_subscribed, on_drop
        self.is_dead, self.on_unavailable = is_dead, on_unavailable
        self.subscribed = asyncio.Event()
        self.connections = 0
        self.subscriptions = 0
        self.last_byte_at: float | None = None
        self.last_heartbeat_at: float | None = None
        self.connected_at: float | None = None
        self.heartbeats_seen = 0
        self.bad_frames = 0
        self.last_event_id: str | None = None
        self.failures = 0
        self.drops: list[str] = []
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._resp: aiohttp.ClientResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._close_cause: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cbchaos-sse")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def force_reconnect(self, cause: str) -> None:
        """Close the current connection (from the watchdog); the reader reconnects."""
        if self._resp is not None and self._close_cause is None:
            self._close_cause = cause
            # wake the pending read first: closing the transport alone may leave it waiting
            self._resp.content.set_exception(ConnectionResetError(f"closed by watchdog: {cause}"))
            self._resp.close()

    def maintain(self, now: float) -> None:
        """Called every tick: replace a silent or never-confirmed connection."""
        if self._resp is None or self.last_byte_at is None:
            return
        if not self.subscribed.is_set() and self.connected_at is not None \
                and now - self.connected_at > self.config.subscribe_timeout:
            self.force_reconnect("subscribe_timeout")
        elif now - self.last_byte_at > self.config.sse_silence_timeout:
            self.force_reconnect("silence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    async def _run(self) -> None:
        delays = _backoff()
        while True:
            cause = await self._connect_once()
            self.subscribed.clear()
            self.drops.append(cause)
            if self.on_drop is not None:
                self.on_drop(cause)
            if self.is_dead is not None and self.is_dead():
                return  # liveness is checked before sleeping; the watchdog reports the death
            if self.failures >= self.config.sse_max_reconnects and self.on_unavailable is not None:
                self.on_unavailable(cause)
            await asyncio.sleep(next(delays) if self.failures else 0.05)  # reconnect backoff
            if self.failures == 0:
                delays = _backoff()

    async def _connect_once(self) -> str:
        url = self.target.events() + "/event"
        headers = {"Accept": "text/event-stream", **self.target.headers()}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=self.config.sse_connect_timeout)
        self._close_cause = None
        subscribed_here = False
        try:
            resp = await asyncio.wait_for(
                self.session.get(url, headers=headers, timeout=timeout),
                self.config.sse_connect_timeout)
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.failures += 1
            return f"connect_failed: {type(exc).__name__}"
        self._resp = resp
        try:
            if resp.status != 200:
                await resp.read()
                return f"http_{resp.status}"
            self.connections += 1
            now = time.monotonic()
            self.connected_at = self.last_byte_at = now
            parser = SSEParser()
            async for chunk in resp.content.iter_any():
                self.last_byte_at = time.monotonic()
                for data in parser.feed(chunk):
                    try:
                        event = json.loads(data)
                    except ValueError:
                        self.bad_frames += 1
                        continue
                    if not isinstance(event, dict):
                        self.bad_frames += 1
                        continue
                    etype = event.get("type")
                    if etype == "server.connected":
                        subscribed_here = True
                        self.failures = 0
                        self.subscriptions += 1
                        self.subscribed.set()
                        if self.on_subscribed is not None:
                            self.on_subscribed(self.subscriptions)
                        continue
                    if etype == "server.heartbeat":
                        self.heartbeats_seen += 1
                        self.last_heartbeat_at = self.last_byte_at
                        continue
                    if etype == "server.instance.disposed":
                        return "instance_disposed"
                    eid = event.get("id")
                    if isinstance(eid, str):
                        if eid in self._seen:
                            continue
                        self._seen[eid] = None
                        if len(self._seen) > 4096:
                            self._seen.popitem(last=False)
                        self.last_event_id = eid
                    self.on_event(event)
            return self._close_cause or "eof"
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            return self._close_cause or f"error: {type(exc).__name__}"
        finally:
            if not subscribed_here:
                self.failures += 1
            resp.close()
            self._resp = None


def _backoff():
    delay = 0.2
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(delay * 2, 5.0)
