"""LeaseWatch on a scripted clock: a FENCED reply is called intact only when it came before the
last grant's send + lease_ttl (docs/stream-machine.md#lease-lapse)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from pytest_cbchaos.stateful.lease_watch import LeaseWatch


def test_fenced_inside_the_lease_is_intact() -> None:
    w = LeaseWatch(2.0)
    w.note("s", "OK", 10.0, 10.1)
    w.note("s", "OK", 10.5, 10.6)
    w.note("s", "FENCED", 11.0, 12.4)
    j = w.judge("s")
    assert j is not None and j.intact and "1.900 s" in j.text


def test_fenced_past_the_lease_may_be_a_lapse() -> None:
    w = LeaseWatch(2.0)
    w.note("s", "OK", 10.0, 10.1)
    w.note("s", "FENCED", 12.0, 12.0)
    assert not w.judge("s").intact


def test_only_grants_answered_before_the_fenced_send_count() -> None:
    """A renewal still in flight when the fenced call was sent may have run after it."""
    w = LeaseWatch(2.0)
    w.note("s", "OK", 10.0, 10.0)
    w.note("s", "OK", 11.5, 12.5)  # answered after the fenced call was sent
    w.note("s", "FENCED", 12.1, 12.2)
    assert not w.judge("s").intact


def test_append_ok_grants_nothing_and_the_first_fenced_counts() -> None:
    w = LeaseWatch(2.0)
    w.note("s", "OK", 10.0, 10.0)
    w.note("s", "OK", 11.9, 11.9, grants=False)
    w.note("s", "FENCED", 12.5, 12.5)
    w.note("s", "FENCED", 13.0, 13.0)  # not the stop
    assert not w.judge("s").intact
    assert w.judge("other") is None
    w.note("t", "FENCED", 1.0, 1.0)
    assert not w.judge("t").intact  # no grant before it: nothing measured, nothing claimed intact


def test_wrap_times_the_store_calls_on_the_clock() -> None:
    now = [100.0]  # the scripted clock

    async def answer(status: str, took: float) -> Any:
        now[0] += took
        return SimpleNamespace(status=status)

    store = SimpleNamespace(open_turn=lambda conv, mid, sid, **kw: answer("OK", 0.1),
                            renew=lambda conv, sid: answer("FENCED", 0.2),
                            append=lambda call: answer("OK", 0.1))
    w = LeaseWatch(2.0, clock=lambda: now[0])
    w.wrap(store)

    async def run() -> None:
        await store.open_turn("a", "m1", "s", payload=b"")
        await store.append(SimpleNamespace(stream_id="s"))
        now[0] += 3.0
        await store.renew("a", "s")
    asyncio.run(run())
    assert w.grants["s"][0].sent == 100.0 and len(w.grants["s"]) == 1
    j = w.judge("s")
    assert not j.intact and "3.400 s" in j.text
