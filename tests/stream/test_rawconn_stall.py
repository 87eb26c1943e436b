"""The test-side SSE connection (``inv_kit.RawConn``) survives its process being descheduled while it
connects: the caller's lag-aware wait is the only deadline (tests/stream/sched_lag.py). Forced: the
loop is blocked (as a descheduled process is) between arming the connect and completing it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from pytest_cbchaos.servers.ports import allocate_port
from tests.stream.inv_kit import RawConn
from tests.stream.stream_helpers import run_bounded

STALL_S = 2.2  # longer than any fixed connect bound a connection had (2 s)


async def _ready(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(b": ready\n\n")
    return resp


def test_connection_survives_a_stall_while_connecting() -> None:
    async def main() -> None:
        app = web.Application()
        app.router.add_get("/v1/conversations/{c}/stream", _ready)
        runner = web.AppRunner(app)
        await runner.setup()
        lease = allocate_port()
        try:
            await web.TCPSite(runner, "127.0.0.1", lease.port).start()
            loop = asyncio.get_running_loop()
            connect = loop.create_connection

            async def stalled_connect(*args: Any, **kw: Any) -> Any:
                loop.create_connection = connect  # type: ignore[method-assign]
                time.sleep(STALL_S)  # the whole loop stops, as when the process is descheduled
                return await connect(*args, **kw)
            loop.create_connection = stalled_connect  # type: ignore[method-assign]
            c = RawConn(f"http://127.0.0.1:{lease.port}", "t", "c1").start()
            await asyncio.wait_for(c.ended.wait(), 10)
            assert c.status == 200 and c.ready.is_set(), c.status
        finally:
            await runner.cleanup()
            lease.release()
    run_bounded(main(), 20)
