"""``latency``: per-chunk delay uniform in ``[latency-jitter, latency+jitter)`` ms.

The delay is measured from the chunk's read timestamp, which is then advanced, so chained
latencies add up and latency never throttles throughput. On interrupt the in-flight chunk is
forwarded immediately.
"""

from __future__ import annotations

import asyncio
import time

from pytest_cbchaos.proxy.toxics.base import Toxic, non_negative, register


@register
class LatencyToxic(Toxic):
    TYPE = "latency"
    ATTRS = {"latency": "int64", "jitter": "int64"}

    def __init__(self, latency: int = 0, jitter: int = 0) -> None:
        self.latency = latency
        self.jitter = jitter

    @classmethod
    def validate(cls, attributes):
        return non_negative(attributes, "latency", "jitter")

    def delay(self, rng) -> float:
        ms = float(self.latency)
        if self.jitter > 0:
            ms += rng.randrange(self.jitter * 2) - self.jitter + rng.random()
        return ms / 1000.0

    async def pipe(self, stub) -> None:
        while True:
            chunk = await stub.get()
            if chunk is None:
                stub.close()
                return
            delay = self.delay(stub.rng)
            sleep = delay - (time.monotonic() - chunk.ts)
            if sleep > 0:
                try:
                    await asyncio.sleep(sleep)
                except asyncio.CancelledError:
                    stub.emit(chunk)  # don't drop data on the floor
                    raise
            chunk.ts += delay  # by the delay, not the sleep: a late pickup must not shorten the next toxic's
            stub.emit(chunk)
