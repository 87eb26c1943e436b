"""``timeout``: drops all data; ``timeout>0`` closes the link after that many ms without traffic.

Every received chunk re-arms the idle timer. ``timeout: 0`` never closes (a blackhole, the
portable half-open partition). Removing the toxic closes the connection, because the bytes it
dropped left the stream corrupt (Toxiproxy's ``Cleanup``).
"""

from __future__ import annotations

import asyncio

from pytest_cbchaos.proxy.toxics.base import Toxic, non_negative, register


@register
class TimeoutToxic(Toxic):
    TYPE = "timeout"
    ATTRS = {"timeout": "int64"}

    def __init__(self, timeout: int = 0) -> None:
        self.timeout = timeout

    @classmethod
    def validate(cls, attributes):
        return non_negative(attributes, "timeout")

    async def pipe(self, stub) -> None:
        while True:
            if self.timeout > 0:
                try:
                    chunk = await asyncio.wait_for(stub.get(), self.timeout / 1000.0)
                except asyncio.TimeoutError:
                    stub.close()
                    return
            else:
                chunk = await stub.get()
            if chunk is None:
                stub.close()
                return
            # data dropped on the ground

    async def on_remove(self, stub) -> None:
        stub.close_link()
