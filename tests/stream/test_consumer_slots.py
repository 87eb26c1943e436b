"""The SSE endpoint's ``max_consumers`` bound (INV-30, docs/stream.md "Invariant -> test") holds under
concurrent connects: a slot is taken before the connect's first await, so connects all suspended in
``connect`` cannot each pass the check; a failed connect gives its slot back. No Redis: the read loop
is a gate."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiohttp
from aiohttp import web

from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.stream import StreamConfig
from pytest_cbchaos.stream.http import STATE, make_app
from pytest_cbchaos.stream.reader import StreamConnectError
from tests.stream.stream_helpers import run_bounded

CFG = StreamConfig.ci(max_consumers=2)
TOKEN = secrets.token_hex(8)
OPENS = 4


class _Store:
    config = CFG


class _GatedLoop:
    """A read loop whose connect waits on ``gate`` and then answers 404: every admitted connect is
    suspended at once, as many concurrent Redis round trips would be."""

    gate: asyncio.Event
    entered = 0

    def __init__(self, store: Any, conv: str, **kw: Any) -> None:
        pass

    async def connect(self) -> dict[str, Any]:
        type(self).entered += 1
        await self.gate.wait()
        raise StreamConnectError(404, "unknown_conversation")


async def _concurrent_opens() -> tuple[int, list[int], int]:
    _GatedLoop.gate, _GatedLoop.entered = asyncio.Event(), 0
    app = make_app(_Store(), TOKEN, loop_class=_GatedLoop)  # type: ignore[arg-type]
    runner, lease = web.AppRunner(app), allocate_port()
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", lease.port).start()
        url = f"http://127.0.0.1:{lease.port}/v1/conversations/c/stream"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
            async def one() -> int:
                async with s.get(url) as resp:
                    return resp.status
            opens = [asyncio.create_task(one()) for _ in range(OPENS)]
            # every request is either suspended in connect or already answered
            while _GatedLoop.entered + sum(t.done() for t in opens) < OPENS:
                await asyncio.sleep(0.01)
            entered = _GatedLoop.entered
            _GatedLoop.gate.set()
            statuses = sorted(await asyncio.gather(*opens))
        return entered, statuses, app[STATE]["consumers"]
    finally:
        await runner.cleanup()
        lease.release()


def test_concurrent_connects_never_exceed_max_consumers():
    entered, statuses, live = run_bounded(_concurrent_opens(), 20)
    assert entered == CFG.max_consumers, f"{entered} connects admitted past max_consumers={CFG.max_consumers}"
    assert statuses == [404] * CFG.max_consumers + [503] * (OPENS - CFG.max_consumers), statuses
    assert live == 0, f"{live} slots still held after every connect failed"
