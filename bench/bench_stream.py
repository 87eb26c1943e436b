"""Stream benchmark: events/s appended and delivered end to end (1 and 50 conversations), resume
latency from an arbitrary cursor; direct and through the kit's fault proxy. Prints medians of several runs
and the proxy/direct ratio. Usage: .venv/bin/python bench/bench_stream.py [--runs 3]"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import shutil
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from pytest_cbchaos.env import Environment
from pytest_cbchaos.settings import Settings
from pytest_cbchaos.stream import LogReader, ScriptedSource, StreamConfig, StreamStore, TurnRelay
from pytest_cbchaos.stream.sources import text_turn

EVENTS = 2000


async def one(host: str, port: int, password: str, n_conv: int, tag: str) -> tuple[float, float]:
    cfg = StreamConfig.ci(flush_interval_ms=5)
    c = aioredis.Redis(host=host, port=port, password=password, max_connections=200)
    store = StreamStore(c, cfg)
    relay = TurnRelay(store, cfg)
    per = EVENTS // n_conv
    t0 = time.perf_counter()
    handles = [await relay.start(f"{tag}{i}", ScriptedSource(text_turn(per)), model_id="m") for i in range(n_conv)]
    readers = [asyncio.create_task(LogReader(store).collect(h.conversation_id, message_id=h.message_id,
                                                            after_seq=h.after_seq)) for h in handles]
    await asyncio.gather(*(h.wait() for h in handles))
    got = await asyncio.gather(*readers)
    dt = time.perf_counter() - t0
    assert sum(len(g) for g in got) >= EVENTS
    # resume latency from an arbitrary cursor of a finished message
    h = handles[0]
    lat = []
    for cur in (h.after_seq, h.after_seq + per // 2, h.after_seq + per):
        t1 = time.perf_counter()
        await LogReader(store).collect(h.conversation_id, message_id=h.message_id, after_seq=cur)
        lat.append(time.perf_counter() - t1)
    await c.aclose()
    return EVENTS / dt, statistics.median(lat)


async def main(runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="cbchaos-bench-"))
    env = Environment.from_settings(Settings.defaults(redis_backend="binary"), work, worker="bench")
    srv = env.redis()
    proxy = env.proxy("bench", f"{srv.host}:{srv.port}")  # the kit's embedded fault proxy
    try:
        for n_conv in (1, 50):
            res = {}
            for path, (host, port) in (("direct", (srv.host, srv.port)), ("proxy", (proxy.listen_host, proxy.listen_port))):
                rates, lats = [], []
                for r in range(runs):
                    rate, lat = await one(host, port, srv.password, n_conv, f"b{path}{n_conv}r{r}c")
                    rates.append(rate)
                    lats.append(lat)
                res[path] = (statistics.median(rates), statistics.median(lats))
                print(f"{n_conv:>2} conv {path:>6}: {res[path][0]:8.0f} events/s end to end, "
                      f"resume median {res[path][1] * 1000:6.2f} ms")
            print(f"{n_conv:>2} conv proxy/direct: throughput x{res['proxy'][0] / res['direct'][0]:.2f}, "
                  f"resume latency x{res['proxy'][1] / res['direct'][1]:.2f}")
    finally:
        env.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    asyncio.run(main(ap.parse_args().runs))
