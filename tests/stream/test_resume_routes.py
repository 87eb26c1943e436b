"""Resume through every route across page boundaries (> 1000 entries): SSE by ``Last-Event-ID``,
``/events?after_seq=`` paged by the consumer, the read loop (``LogReader``) and ``StreamStore.read_all``;
each delivery must start right after its cursor and reach the terminal with no gap and no duplicate.
Off-by-one mutants at the page boundary are caught (docs/stream.md#resume-routes)."""

from __future__ import annotations

import json
import secrets
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.stream import LogReader, StreamConfig, StreamStore, check_stream
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.client import _sse
from pytest_cbchaos.stream.envelope import Envelope, encode_payload, kind_class
from pytest_cbchaos.stream.http import make_app
from pytest_cbchaos.stream.reader import ReadLoop
from pytest_cbchaos.stream.store import AppendCall
from pytest_cbchaos.testing.stream_mutants import M1InclusiveAfterStore, M1PageSkipReadLoop
from tests.stream.stream_helpers import client_for, run_bounded

CFG = StreamConfig.ci()
DELTAS = 1048  # turn_started + deltas + complete = 1050 entries: read_all and /events page at 1000
CURSORS = (0, 999, 1049)
EVENTS_LIMIT = 1000
TOKEN = secrets.token_hex(8)


async def _fill(store: StreamStore, conv: str) -> tuple[str, int]:
    """One turn of ``DELTAS`` deltas written by the scripts in full batches; returns (mid, last_seq)."""
    mid, sid = "m1", "s:" + secrets.token_hex(4)
    r = await store.open_turn(conv, mid, sid, ts_ms=1, superseded_payload=b"{}",
                              payload=encode_payload("turn_started", {"model_id": "m", "source": "t",
                                                                      "previous_message_id": None}))
    last, step = r.first_seq, 2
    kinds = ["text_delta"] * DELTAS + ["complete"]
    while kinds:
        batch, kinds = kinds[:CFG.max_batch], kinds[CFG.max_batch:]
        events = tuple((k, kind_class(k), 1, encode_payload(k, {"part_id": "p", "text": f"{step + i} "}
                                                            if k == "text_delta" else
                                                            {"finish_reason": "stop", "usage": {}}))
                       for i, k in enumerate(batch))
        reply = await store.append(AppendCall(conv, mid, sid, step, last, r.epoch, events))
        assert reply.status == "OK", reply
        last, step = reply.last_seq, step + len(batch)
    return mid, last


async def _sse_route(url: str, conv: str, cursor: int) -> list[Envelope]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Last-Event-ID": str(cursor)}
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/v1/conversations/{conv}/stream", headers=headers) as resp:
            if resp.status == 204:
                return []
            assert resp.status == 200, await resp.text()
            return [Envelope.from_json(data) async for ev, data in _sse(resp) if ev == "stream"]


async def _events_route(url: str, conv: str, cursor: int) -> list[Envelope]:
    out: list[Envelope] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        while True:
            async with s.get(f"{url}/v1/conversations/{conv}/events",
                             params={"after_seq": str(cursor), "limit": str(EVENTS_LIMIT)}) as resp:
                assert resp.status == 200, await resp.text()
                page = [Envelope.from_json(json.dumps(e)) for e in await resp.json()]
            out += page
            if not page or page[-1].seq <= cursor:  # the end, or a route that makes no progress
                return out
            cursor = page[-1].seq


ROUTES = ("sse", "events", "read_loop", "read_all")


@pytest.fixture
def long_turn(cbchaos_redis_proc: Any) -> Any:
    """One conversation of 1050 entries (the kit's hygiene empties Redis between tests): (proc, conv, mid, log)."""
    conv = "resume-" + secrets.token_hex(4)

    async def fill() -> tuple[str, list[Envelope]]:
        client = client_for(cbchaos_redis_proc)
        try:
            mid, last = await _fill(StreamStore(client, CFG), conv)
            log = await StreamStore(client, CFG).read_all(conv)
            assert [e.seq for e in log] == list(range(1, last + 1)) and last == DELTAS + 2
            return mid, log
        finally:
            await client.aclose()
    mid, log = run_bounded(fill(), 30)
    yield cbchaos_redis_proc, conv, mid, log

    async def drop() -> None:
        client = client_for(cbchaos_redis_proc)
        await client.delete(*StreamStore(client, CFG).keys(conv))
        await client.aclose()
    run_bounded(drop(), 10)


async def _routes(long_turn: Any, store_class: type[StreamStore], loop_class: type[ReadLoop],
                  routes: tuple[str, ...] = ROUTES) -> dict[str, list[str]]:
    """Each of ``routes`` from every cursor (``read_all`` from 0 only); returns each route's violations
    (INV-1 gap, INV-2 duplicate, INV-6 terminal not reached, or a count that differs from the log)."""
    proc, conv, mid, log = long_turn
    last = log[-1].seq
    client = client_for(proc)
    store = store_class(client, CFG)
    lease = allocate_port()
    runner = web.AppRunner(make_app(store, TOKEN, loop_class=loop_class))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", lease.port).start()
        url = f"http://127.0.0.1:{lease.port}"
        readers = {"sse": lambda c: _sse_route(url, conv, c), "events": lambda c: _events_route(url, conv, c),
                   "read_loop": lambda c: LogReader(store).collect(conv, after_seq=c),
                   "read_all": lambda c: store.read_all(conv)}
        out = {}
        for route in routes:
            ds = []
            for c in (0,) if route == "read_all" else CURSORS:
                d = Delivery(c, name=f"{route}@{c}", target=mid)
                for e in await readers[route](c):
                    d.add(e, 0.0)
                ds.append(d)
            rep = check_stream(log, last_seq=last, deliveries=ds)
            out[route] = rep.violations + [f"{d.name}: {len(d.items)} of {last - d.cursor0}" for d in ds
                                           if len(d.items) != last - d.cursor0]
        return out
    finally:
        await runner.cleanup()
        lease.release()
        await client.aclose()


def test_every_route_resumes_across_page_boundaries(long_turn, run):
    bad = run(_routes(long_turn, StreamStore, ReadLoop), timeout=60)
    assert bad == {route: [] for route in ROUTES}, bad


def test_inclusive_after_mutant_is_caught(long_turn, run):
    """The paged routes repeat the boundary entry; the read loop drops what its cursor has seen."""
    bad = run(_routes(long_turn, M1InclusiveAfterStore, ReadLoop, ("events", "read_all", "read_loop")), timeout=60)
    assert bad["read_loop"] == [], bad
    assert "INV-2 no duplicate: events@0: seq 1000 delivered again (cursor 1000)" in bad["events"], bad["events"]
    assert "INV-2 no duplicate: read_all@0: seq 1000 delivered again (cursor 1000)" in bad["read_all"], bad["read_all"]


def test_page_skip_read_loop_mutant_is_caught(long_turn, run):
    bad = run(_routes(long_turn, StreamStore, M1PageSkipReadLoop, ("sse",)), timeout=60)
    assert any(v.startswith("INV-6 reaches terminal: sse@0") for v in bad["sse"]), bad["sse"]
