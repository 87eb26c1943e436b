"""A CLIENT KILL of every client mid-turn (the scenarios' ``client_kill`` fault) on each local
backend: the consumer, killed while following, reconnects and reaches the terminal; the producer
finishes the turn. Runs its own servers, so the embedded default is checked next to redis-server."""

from __future__ import annotations

import asyncio
import shutil
from typing import AsyncIterator

import pytest
import redis.asyncio as aioredis
from tests.stream.inv_kit import wait_until

from pytest_cbchaos.servers.redis import start_redis
from pytest_cbchaos.stream import StreamConfig, StreamStore, TurnRelay, check_stream
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.reader import LogReader
from pytest_cbchaos.stream.sources import ScriptedSource, SourceEvent

BACKENDS = [pytest.param("binary", marks=pytest.mark.skipif(not shutil.which("redis-server"),
                                                            reason="redis-server not installed")),
            "fakeredis"]
CFG = StreamConfig.ci()


class TwoGateSource(ScriptedSource):
    """Deltas 0-2, ``gates[0]``, delta 3, ``gates[1]``, complete: the terminal cannot come with delta 3,
    so a consumer handed delta 3 must go back to Redis (its wake-up checks) before it."""

    def __init__(self) -> None:
        super().__init__([])
        self.gates = (asyncio.Event(), asyncio.Event())

    async def __aiter__(self) -> AsyncIterator[SourceEvent]:  # type: ignore[override]
        for i in range(4):
            if i == 3:
                await self.gates[0].wait()
            yield SourceEvent("text_delta", {"part_id": "p", "text": f"d{i}"})
        await self.gates[1].wait()
        yield SourceEvent("complete", {"finish_reason": "stop", "usage": {}})


def _client(server) -> aioredis.Redis:
    """Configured as the stream scenario target's clients (redis-py's default retries)."""
    return aioredis.Redis(host=server.host, port=server.port, password=server.password, socket_timeout=1.0,
                          socket_connect_timeout=1.0)


async def _kill_mid_turn(server) -> None:
    prod, cons, admin = _client(server), _client(server), _client(server)
    relay = TurnRelay(StreamStore(prod, CFG), CFG)
    reader = LogReader(StreamStore(cons, CFG))
    try:
        src = TwoGateSource()
        hd = await relay.start("ck", src, model_id="m")
        d = Delivery(hd.after_seq, name="c", target=hd.message_id)

        async def consume() -> None:
            async for env in reader.follow("ck", message_id=hd.message_id, after_seq=hd.after_seq):
                d.add(env, 0.0)

        task = asyncio.create_task(consume())

        def delivered(n: int) -> bool:
            if task.done():
                task.result()  # the consumer's own error, not a timeout, if it failed
            return len(d.items) == n

        # turn_started and deltas 0-2 delivered, the blocking read connection open
        await wait_until(lambda: delivered(4) and reader.last_loop is not None
                         and reader.last_loop._blocking is not None, 10, "the consumer to wait for more")
        killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert killed >= 3, killed  # producer, consumer, the consumer's blocking read
        src.gates[0].set()
        await wait_until(lambda: delivered(5), 10, "delta 3 after the kill")
        src.gates[1].set()
        out = await asyncio.wait_for(hd.wait(), 10)
        await asyncio.wait_for(task, 10)
        assert out.status == "completed", out
        store = StreamStore(admin, CFG)
        entries, meta = await store.read_all("ck"), await store.meta("ck")
        rep = check_stream(entries, floor_seq=meta["floor_seq"], last_seq=meta["last_seq"], deliveries=[d],
                           emissions=relay.emissions, require_finished=True)
        assert rep.ok, rep.violations
        assert d.items[-1][0].is_terminal and len(d.items) == 1 + 4 + 1  # turn_started, deltas, terminal
    finally:
        await relay.aclose()
        for c in (prod, cons, admin):
            await c.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_client_kill_mid_turn_consumer_reaches_terminal(backend, tmp_path, run):
    server = start_redis(backend, workdir=tmp_path)
    try:
        run(_kill_mid_turn(server), timeout=30)
    finally:
        server.stop()
