"""``slicer``: splits chunks into pieces around ``average_size`` (± ``size_variation``) bytes,
sent ``delay`` microseconds apart."""

from __future__ import annotations

import asyncio

from pytest_cbchaos.proxy.toxics.base import Chunk, Toxic, non_negative, register


@register
class SlicerToxic(Toxic):
    TYPE = "slicer"
    ATTRS = {"average_size": "int", "size_variation": "int", "delay": "int"}  # Go int

    def __init__(self, average_size: int = 0, size_variation: int = 0, delay: int = 0) -> None:
        self.average_size = average_size
        self.size_variation = size_variation
        self.delay = delay

    @classmethod
    def validate(cls, attributes):
        return non_negative(attributes, "average_size", "size_variation", "delay")

    def cuts(self, start: int, end: int, rng) -> list[int]:
        """Boundaries [start, ..., end], recursively halving (iterative to avoid deep recursion)."""
        out = [start]
        stack = [(start, end)]
        while stack:
            s, e = stack.pop()
            if (e - s) - self.average_size <= self.size_variation or e - s <= 1:
                out.append(e)
                continue
            mid = s + (e - s) // 2
            if self.size_variation > 0:
                mid += rng.randrange(self.size_variation * 2) - self.size_variation
            mid = min(max(mid, s + 1), e - 1)
            stack.append((mid, e))
            stack.append((s, mid))
        return out

    async def pipe(self, stub) -> None:
        while True:
            chunk = await stub.get()
            if chunk is None:
                stub.close()
                return
            cuts = self.cuts(0, len(chunk.data), stub.rng)
            for i in range(1, len(cuts)):
                stub.emit(Chunk(chunk.data[cuts[i - 1]:cuts[i]], chunk.ts))
                if i < len(cuts) - 1 and self.delay > 0:
                    try:
                        await asyncio.sleep(self.delay / 1_000_000.0)
                    except asyncio.CancelledError:
                        stub.emit(Chunk(chunk.data[cuts[i]:], chunk.ts))
                        raise
