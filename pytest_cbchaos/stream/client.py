"""`StreamClient`: the Python SSE consumer (docs/stream-design.md#python-client). Deliver, then advance; dedup by seq;
reconnect with `Last-Event-ID = cursor`; a transport failure never marks a message failed."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any, AsyncIterator

import aiohttp

from pytest_cbchaos.stream.config import StreamConfig
from pytest_cbchaos.stream.envelope import Envelope
from pytest_cbchaos.stream.fold import TurnView, fold


class StreamError(Exception):
    pass


class ConsumerBusy(StreamError):
    """A second ``follow`` on one client while one is live."""


class StreamUnavailable(StreamError):
    """Reconnect budget exhausted: the outcome is unknown (never "failed")."""


class StreamReset(StreamError):
    pass


class StreamTruncated(StreamError):
    pass


class StreamLost(StreamError):
    pass


class StreamGapError(StreamError):
    pass


class StreamSuperseded(StreamError):
    """A newer connection with the same client id took over (INV-18): this one ends, no reconnect."""


class _Retry(Exception):
    pass


class StreamClient:
    def __init__(self, base_url: str, token: str, client_id: str, config: StreamConfig | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.client_id = client_id
        self.config = config or StreamConfig()
        self._busy = False
        self.cursor = 0
        self.epoch: str | None = None
        self.target: str | None = None
        self.reconnects = 0
        self.notices: list[str] = []

    async def follow(self, conversation_id: str, message_id: str | None = None, after_seq: int = 0,
                     follow: bool = False) -> AsyncIterator[Envelope]:
        if self._busy:
            raise ConsumerBusy(f"client {self.client_id!r} already has a live stream")
        self._busy = True
        self.cursor, self.target, self.epoch = after_seq, message_id, None
        cfg = self.config
        delay = 0.1
        gap_tries = 0
        progress_at = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=cfg.silence_timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                while True:
                    params: dict[str, str] = {"after_seq": str(self.cursor), "client_id": self.client_id}
                    if self.target:
                        params["message_id"] = self.target
                    if self.epoch:
                        params["epoch"] = self.epoch
                    if follow:
                        params["follow"] = "1"
                    headers = {"Authorization": f"Bearer {self.token}", "Last-Event-ID": str(self.cursor)}
                    try:
                        async with session.get(f"{self.base_url}/v1/conversations/{conversation_id}/stream",
                                               params=params, headers=headers) as resp:
                            if resp.status == 204:
                                return
                            if resp.status in (409, 410):
                                body = await resp.json()
                                code = body.get("code")
                                exc = {"truncated": StreamTruncated, "stream_lost": StreamLost}.get(code, StreamReset)
                                raise exc(f"{resp.status} {body}")
                            if resp.status == 404:
                                raise StreamError(f"404 {await resp.text()}")
                            if resp.status >= 500:
                                raise _Retry(f"HTTP {resp.status}")
                            if resp.status != 200:
                                raise StreamError(f"HTTP {resp.status}: {await resp.text()}")
                            self.epoch = resp.headers.get("X-Cbchaos-Epoch", self.epoch)
                            ended = False
                            async for ev, data in _sse(resp):
                                if ev == "ready":
                                    t = data.split("target=")[-1].strip()
                                    self.target = self.target or (t if t and t != "None" else None)
                                    continue
                                if ev == "cbchaos":
                                    self.notices.append(data)
                                    self._on_notice(data)
                                    continue
                                env = Envelope.from_json(data)
                                if env.seq <= self.cursor:
                                    continue
                                if env.seq > self.cursor + 1:
                                    gap_tries += 1
                                    if gap_tries > 3:
                                        raise StreamGapError(f"jump {self.cursor} -> {env.seq}")
                                    raise _Retry("gap")
                                yield env  # deliver, then advance
                                self.cursor = env.seq
                                progress_at, delay, gap_tries = time.monotonic(), 0.1, 0
                                if env.is_terminal and env.message_id == self.target and not follow:
                                    ended = True
                                    return
                            if not ended:
                                raise _Retry("stream ended without the target's terminal")
                    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, _Retry) as exc:
                        if isinstance(exc, _Retry) and str(exc) == "stream ended without the target's terminal" and follow:
                            pass
                        if time.monotonic() - progress_at > cfg.reconnect_budget_s:
                            raise StreamUnavailable(f"no progress for {cfg.reconnect_budget_s}s: {exc!r}") from exc
                        self.reconnects += 1
                        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                        delay = min(delay * 2, 2.0)
        finally:
            self._busy = False

    def _on_notice(self, data: str) -> None:
        """A superseded connection ends for good: reconnecting would take the stream back from the
        newer consumer with the same client id, and the two would evict each other forever."""
        try:
            code = json.loads(data).get("code")
        except (ValueError, AttributeError):
            return
        if code == "superseded":
            raise StreamSuperseded(f"client {self.client_id!r}: a newer connection took over")

    async def run_to_end(self, conversation_id: str, message_id: str | None = None, after_seq: int = 0) -> TurnView:
        envs = [e async for e in self.follow(conversation_id, message_id, after_seq)]
        return fold(envs, self.target)


async def _sse(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """Yield (event, data) per SSE event; ``("ready", comment)`` for the ready comment."""
    event, data = "message", []
    async for raw in resp.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            if line.startswith(": ready"):
                yield "ready", line
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" ") if line.startswith("data: ") else line[5:])
