"""``limit_data``: forwards until ``bytes`` passed (truncating the crossing chunk), then closes.

Stateful per link: the byte count survives restarts of the toxic (updates), like Toxiproxy's
``LimitDataToxicState``. ``bytes: 0`` closes on the first chunk.
"""

from __future__ import annotations

from pytest_cbchaos.proxy.toxics.base import Chunk, Toxic, non_negative, register


@register
class LimitDataToxic(Toxic):
    TYPE = "limit_data"
    ATTRS = {"bytes": "int64"}

    def __init__(self, bytes: int = 0) -> None:  # noqa: A002 - the attribute's name
        self.bytes = bytes

    @classmethod
    def validate(cls, attributes):
        return non_negative(attributes, "bytes")

    async def pipe(self, stub) -> None:
        state = stub.state
        state.setdefault("transmitted", 0)
        remaining = self.bytes - state["transmitted"]
        while True:
            chunk = await stub.get()
            if chunk is None:
                stub.close()
                return
            remaining = max(remaining, 0)
            if remaining < len(chunk.data):
                chunk = Chunk(chunk.data[:remaining], chunk.ts)
            if chunk.data:
                stub.emit(chunk)
                state["transmitted"] += len(chunk.data)
                remaining = self.bytes - state["transmitted"]
            if remaining <= 0:
                stub.close()
                return
