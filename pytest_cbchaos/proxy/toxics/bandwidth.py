"""``bandwidth``: ``rate`` KB/s (KB = 1000 bytes) per link.

Each chunk is delayed by size/rate; chunks larger than ``rate*100`` bytes are split and sent
every 100 ms. ``rate: 0`` stalls the link forever (empty slices every 100 ms), a Toxiproxy quirk
users rely on as a stall.
"""

from __future__ import annotations

import asyncio
import time

from pytest_cbchaos.proxy.toxics.base import Chunk, Toxic, non_negative, register


@register
class BandwidthToxic(Toxic):
    TYPE = "bandwidth"
    ATTRS = {"rate": "int64"}

    def __init__(self, rate: int = 0) -> None:
        self.rate = rate

    @classmethod
    def validate(cls, attributes):
        return non_negative(attributes, "rate")

    async def pipe(self, stub) -> None:
        sleep = 0.0
        while True:
            chunk = await stub.get()
            if chunk is None:
                stub.close()
                return
            data = chunk.data
            if self.rate > 0:
                sleep += len(data) / 1000.0 / self.rate
            else:
                sleep = 0.0
            step = self.rate * 100
            try:
                while len(data) > step:
                    await asyncio.sleep(0.1)
                    stub.emit(Chunk(data[:step], chunk.ts))
                    data = data[step:]
                    sleep -= 0.1
                start = time.monotonic()
                if sleep > 0:
                    await asyncio.sleep(sleep)
                sleep -= time.monotonic() - start
            except asyncio.CancelledError:
                stub.emit(Chunk(data, chunk.ts))
                raise
            stub.emit(Chunk(data, chunk.ts))
