"""In-loop harness: relay (producer side, through `redis-producer`) + SSE app (consumer side,
through `redis-consumer`) + reaper, on an allocated port."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.stream.stream_helpers import client_for
from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.stream import Reaper, StreamConfig, StreamStore, TurnRelay
from pytest_cbchaos.stream.http import make_app


class Harness:
    def __init__(self, proc: Any, proxies: dict, config: StreamConfig) -> None:
        self.proc, self.proxies, self.config = proc, proxies, config
        self.token = secrets.token_hex(16)
        self.clients: dict = {}

    async def __aenter__(self) -> "Harness":
        cfg = self.config
        # no hidden client retries: the relay's own identical resend is what is under test
        self.pclient = client_for(self.proc, self.proxies.get("producer"), socket_timeout=1.0,
                                  retry=Retry(NoBackoff(), 0))
        self.cclient = client_for(self.proc, self.proxies.get("consumer"), socket_timeout=1.0)
        self.admin = client_for(self.proc)
        self.pstore = StreamStore(self.pclient, cfg)
        self.cstore = StreamStore(self.cclient, cfg)
        self.astore = StreamStore(self.admin, cfg)
        self.history: list[dict] = []
        self.relay = TurnRelay(self.pstore, cfg, history=self.history)
        self.reaper = Reaper(StreamStore(self.admin, cfg))
        self.reaper.start()
        self.lease = allocate_port()
        self.runner = web.AppRunner(make_app(self.cstore, self.token, relay=self.relay))
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.lease.port)
        await self.site.start()
        self.url = f"http://127.0.0.1:{self.lease.port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.relay.aclose()
        await self.reaper.stop()
        await self.runner.cleanup()
        self.lease.release()
        for c in (self.pclient, self.cclient, self.admin):
            await c.aclose()
