"""The relay's lease renewal loop, with the interleavings that matter forced by gated store calls
(docs/stream-design.md#leases-fencing-and-the-reaper):

* a renewal that meets the lease the run's own terminal just ended is not a fence: the turn completed
  and its outcome says so (no ``stop_reason``); forced by holding the terminal's reply until such a
  renewal was answered and the run read who wrote the terminal;
* the run ends even when the cancel of its renewal task is swallowed by the client read in flight.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.stream.stream_helpers import client_for
from pytest_cbchaos.stream import ScriptedSource, StreamConfig, StreamStore, TurnRelay
from pytest_cbchaos.stream.scripted import GatedScript
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


class SwallowingRenewStore(StreamStore):
    """After the first renewal, a renewal hangs until cancelled; the first cancel becomes TimeoutError
    instead of CancelledError: what a client read does when its own timeout and the cancel land
    together (Python 3.11's ``asyncio.timeout``)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.renewals = 0
        self.swallowed = 0

    async def renew(self, conv: str, stream_id: str) -> Any:
        self.renewals += 1
        if self.renewals == 1:
            return await super().renew(conv, stream_id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if self.swallowed:
                raise  # once is enough (and the test's own cleanup can end the run)
            self.swallowed += 1
            raise asyncio.TimeoutError("read timed out") from None
        raise AssertionError("unreachable")


def test_run_ends_when_its_renewal_swallows_the_cancel(cbchaos_redis_proc: Any, run: Any) -> None:
    """The run ends within a renewal period of its turn's end even when the cancel of its renewal
    task is swallowed (the renewal loop also stops on a flag)."""
    async def main() -> None:
        client = client_for(cbchaos_redis_proc)
        store = SwallowingRenewStore(client, CFG)
        try:
            source = GatedScript(text_turn(3), hold_at=1)
            relay = TurnRelay(store, CFG)
            h = await relay.start("c2", source, model_id="m")
            while store.renewals < 2:  # held mid-stream until the second renewal hangs
                await asyncio.sleep(CFG.lease_renew_s / 2)
            source.gate.set()  # the turn ends while that renewal is in flight
            done, _ = await asyncio.wait({h.task}, timeout=5 + 2 * CFG.lease_renew_s)
            assert h.task in done, "the run never ended: its renewal loop outlived the cancel"
            assert store.swallowed >= 1 and h.task.result().status == "completed", h.task.result()
        finally:
            await asyncio.wait({asyncio.ensure_future(relay.aclose())}, timeout=2)  # bounded: a hung run stays hung
            await client.aclose()
    run(main())


class SwallowingCancelCheckStore(StreamStore):
    """Once armed, the run's user-cancel check hangs until cancelled and turns the first cancel into
    TimeoutError (a client read whose own timeout and the cancel land together, Python 3.11)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.armed = asyncio.Event()
        self.hanging = asyncio.Event()
        self.swallowed = 0

    async def cancel_requested(self, conv: str, mid: str) -> bool:
        if not self.armed.is_set() or self.swallowed:
            return await super().cancel_requested(conv, mid)
        self.hanging.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.swallowed += 1
            raise asyncio.TimeoutError("read timed out") from None
        raise AssertionError("unreachable")


def test_shutdown_ends_a_run_whose_cancel_was_swallowed(cbchaos_redis_proc: Any, run: Any) -> None:
    """SIGTERM's aclose: a run whose cancellation a store call swallowed still ends with
    ``cancelled{relay_shutdown}`` (the loop checks the relay's ``closing`` flag), not at the process's
    shutdown bound."""
    async def main() -> None:
        client = client_for(cbchaos_redis_proc)
        store = SwallowingCancelCheckStore(client, CFG)
        relay = TurnRelay(store, CFG)
        try:
            h = await relay.start("c3", GatedScript(text_turn(3), hold_at=1), model_id="m")  # held: never ends alone
            store.armed.set()
            await asyncio.wait_for(store.hanging.wait(), 5)
            closing = asyncio.ensure_future(relay.aclose())
            done, _ = await asyncio.wait({closing}, timeout=CFG.shutdown_grace_s + 2)
            assert closing in done, "aclose never returned: the run outlived its swallowed cancel"
            assert store.swallowed == 1 and h.task.done()
            last = (await store.xrange("c3"))[-1]
            assert last.kind == "cancelled" and last.payload.get("reason") == "relay_shutdown", last
        finally:
            await asyncio.wait({asyncio.ensure_future(relay.aclose())}, timeout=2)  # bounded
            await client.aclose()
    run(main())
