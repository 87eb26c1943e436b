"""A renewal that meets the lease the run's own terminal just ended is not a fence: the turn
completed, and its outcome must say so (no ``stop_reason``). Forced: the terminal append is
applied, then its reply is held until a renewal has been answered (docs/stream-design.md#leases-fencing-and-the-reaper)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.stream.stream_helpers import client_for
from pytest_cbchaos.stream import ScriptedSource, StreamConfig, StreamStore, TurnRelay
from pytest_cbchaos.stream.sources import text_turn

CFG = StreamConfig.ci(lease_ttl_s=0.9, lease_renew_s=0.05)


class RenewAfterTerminalStore(StreamStore):
    """The terminal's reply waits until a renewal that ran after it (FENCED: the terminal deleted the lease)
    has been answered and the run has read who wrote the terminal (its ``xrange``)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.terminal_applied = asyncio.Event()
        self.renewed_after = asyncio.Event()
        self.learned = asyncio.Event()
        self.renew_replies: list[str] = []

    async def append(self, call: Any) -> Any:
        reply = await super().append(call)
        if call.is_terminal:
            self.terminal_applied.set()
            await asyncio.wait_for(self.renewed_after.wait(), 5)
            await asyncio.wait({asyncio.ensure_future(self.learned.wait())}, timeout=5)
        return reply

    async def xrange(self, *args: Any, **kw: Any) -> Any:
        entries = await super().xrange(*args, **kw)
        if self.renewed_after.is_set():
            self.learned.set()
        return entries

    async def renew(self, conv: str, stream_id: str) -> Any:
        sent_after = self.terminal_applied.is_set()
        reply = await super().renew(conv, stream_id)
        if sent_after or (self.terminal_applied.is_set() and reply.status == "FENCED"):  # ran after the terminal
            self.renew_replies.append(reply.status)
            self.renewed_after.set()
        return reply


def test_renewal_after_the_own_terminal_is_not_a_fence(cbchaos_redis_proc: Any, run: Any) -> None:
    async def main() -> None:
        client = client_for(cbchaos_redis_proc)
        store = RenewAfterTerminalStore(client, CFG)
        try:
            h = await TurnRelay(store, CFG).start("c1", ScriptedSource(text_turn(3)), model_id="m")
            out = await h.wait()
        finally:
            await client.aclose()
        assert store.renew_replies[:1] == ["FENCED"], store.renew_replies
        assert out.status == "completed" and out.stop_reason is None and out.superseded_by is None, out
    run(main())
