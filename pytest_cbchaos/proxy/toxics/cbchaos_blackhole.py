"""EXTENSION (cbchaos only, not in Toxiproxy): ``cbchaos_blackhole``.

``mode: "drop"`` discards bytes (like ``timeout: 0``) and closes the connection on removal;
``mode: "hold"`` buffers instead (up to ``max_bytes``, 0 = unlimited) and delivers everything on
removal without closing, modelling TCP retransmission after a healed partition. If a hold
buffer overflowed, bytes were lost, so removal closes the connection like ``drop``.
"""

from __future__ import annotations

import asyncio

from pytest_cbchaos.proxy.toxics.base import Toxic, non_negative, register


@register
class BlackholeToxic(Toxic):
    TYPE = "cbchaos_blackhole"
    ATTRS = {"mode": "string", "max_bytes": "int64"}
    EXTENSION = True

    def __init__(self, mode: str = "", max_bytes: int = 0) -> None:
        self.mode = mode or "drop"
        self.max_bytes = max_bytes

    @classmethod
    def validate(cls, attributes):
        if attributes.get("mode", "") not in ("", "drop", "hold"):
            return f"mode must be one of drop, hold; got {attributes['mode']!r}"
        return non_negative(attributes, "max_bytes")

    async def pipe(self, stub) -> None:
        state = stub.state
        held = state.setdefault("held", [])
        state.setdefault("lost", False)
        try:
            while True:
                chunk = await stub.get()
                if self.mode == "drop":
                    if chunk is None:
                        stub.close()
                        return
                    state["lost"] = True
                    continue
                size = sum(len(c.data) for c in held if c is not None)
                if chunk is not None and self.max_bytes and size + len(chunk.data) > self.max_bytes:
                    state["lost"] = True
                    continue
                held.append(chunk)
        except asyncio.CancelledError:
            if not stub.removing:
                for item in reversed(held):
                    stub.unget(item)
                held.clear()
            raise

    async def on_remove(self, stub) -> None:
        held = stub.state.get("held", [])
        if stub.state.get("lost"):
            held.clear()
            stub.close_link()
            return
        for item in held:
            if item is None:
                stub.close()
                break
            stub.emit(item)
        held.clear()
