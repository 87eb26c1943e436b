"""``reset_peer``: on the first chunk (or EOF) drop it, sleep ``timeout`` ms, close the link.

The link sets linger 0 on both its sockets (source and destination) at link start when its chain holds a reset_peer
toxic (even if the toxicity roll chose pass-through), so closes become RSTs (ECONNRESET); one
added to an already open connection closes it with FIN, as in Toxiproxy.
"""

from __future__ import annotations

import asyncio

from pytest_cbchaos.proxy.toxics.base import Toxic, non_negative, register


@register
class ResetPeerToxic(Toxic):
    TYPE = "reset_peer"
    ATTRS = {"timeout": "int64"}
    GO_STRUCT = "ResetToxic"
    SETS_LINGER = True

    def __init__(self, timeout: int = 0) -> None:
        self.timeout = timeout

    @classmethod
    def validate(cls, attributes):
        return non_negative(attributes, "timeout")

    async def pipe(self, stub) -> None:
        await stub.get()
        # not interruptible: shield the sleep so an interrupt still closes afterwards
        done = asyncio.ensure_future(asyncio.sleep(self.timeout / 1000.0))
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            await done
            stub.close()
            raise
        stub.close()
