"""``slow_close``: passes data; on source EOF waits ``delay`` ms before closing."""

from __future__ import annotations

import asyncio

from pytest_cbchaos.proxy.toxics.base import Toxic, non_negative, register


@register
class SlowCloseToxic(Toxic):
    TYPE = "slow_close"
    ATTRS = {"delay": "int64"}

    def __init__(self, delay: int = 0) -> None:
        self.delay = delay

    @classmethod
    def validate(cls, attributes):
        return non_negative(attributes, "delay")

    async def pipe(self, stub) -> None:
        while True:
            chunk = await stub.get()
            if chunk is None:
                try:
                    await asyncio.sleep(self.delay / 1000.0)
                except asyncio.CancelledError:
                    stub.unget(None)  # the restarted toxic sees the EOF again
                    raise
                stub.close()
                return
            stub.emit(chunk)
