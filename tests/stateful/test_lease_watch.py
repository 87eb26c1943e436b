"""LeaseWatch on a scripted clock: a FENCED reply is called intact only when it came before the
last grant's send + lease_ttl (docs/stream-machine.md#lease-lapse); every renewal gap is judged against
lease_renew_s plus the lag a scripted sampler observed (docs/stream-machine.md#renewal-cadence)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_cbchaos.stateful.lease_watch import Call, LeaseWatch


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
                            append=lambda call: answer("OK", 0.1), active_add=lambda conv: answer("OK", 0.0))
    w = LeaseWatch(2.0, clock=lambda: now[0])
    w.wrap(store)

    async def run() -> None:
        await store.open_turn("a", "m1", "s", payload=b"")
        await store.append(SimpleNamespace(stream_id="s", is_terminal=False))
        now[0] += 3.0
        await store.renew("a", "s")
    asyncio.run(run())
    assert w.grants["s"][0].sent == 100.0 and len(w.grants["s"]) == 1
    j = w.judge("s")
    assert not j.intact and "3.400 s" in j.text


# -- renewal cadence (docs/stream-machine.md#renewal-cadence) ----------------------------------------
class ScriptedProducer:
    """A producer store on a scripted clock: each call takes ``rtt``; ``renew`` answers ``renew_status``
    (or raises ``ConnectionError`` for ``"error"``)."""

    def __init__(self, now: list[float], rtt: float = 0.01) -> None:
        self.now, self.rtt, self.renew_status = now, rtt, "OK"
        self.add_rtt = rtt

    async def _answer(self, status: str, took: float) -> Any:
        self.now[0] += took
        if status == "error":
            raise ConnectionError("reset")
        return SimpleNamespace(status=status)

    def open_turn(self, conv: str, mid: str, sid: str, **kw: Any) -> Any:
        return self._answer("OK", self.rtt)

    def renew(self, conv: str, sid: str) -> Any:
        return self._answer(self.renew_status, self.rtt)

    def append(self, call: Any) -> Any:
        return self._answer("OK", self.rtt)

    async def active_add(self, conv: str) -> None:
        self.now[0] += self.add_rtt


def cadence_watch(renew_s: float = 0.5) -> tuple[LeaseWatch, ScriptedProducer, list[float]]:
    from pytest_cbchaos.lag import LagSampler

    now = [10.0]
    lag = LagSampler(0.02, clock=lambda: now[0])
    lag.note_wake(now[0], now[0])  # sampling since 10.0
    w = LeaseWatch(2.0, clock=lambda: now[0], renew_s=renew_s, lag=lag)
    store = ScriptedProducer(now)
    w.wrap(store)
    return w, store, now


def drive(store: ScriptedProducer, now: list[float], script: list[tuple[str, float]]) -> None:
    """``script``: (call, wait before it); calls: open, renew, add (active_add), content, terminal."""
    async def run() -> None:
        for what, wait in script:
            now[0] += wait
            try:
                if what == "open":
                    await store.open_turn("a", "m1", "s", payload=b"")
                elif what == "renew":
                    await store.renew("a", "s")
                elif what == "add":
                    await store.active_add("a")
                else:
                    await store.append(SimpleNamespace(stream_id="s", is_terminal=what == "terminal"))
            except ConnectionError:
                pass
    asyncio.run(run())


def late(w: LeaseWatch, now: list[float]) -> list[str]:
    """``cadence`` with the sampler's latest wake-up on time (else its overdue wait counts as lag)."""
    w.lag.note_wake(now[0], now[0])
    return w.cadence("s")


def renewing(every: float, n: int) -> list[tuple[str, float]]:
    """The relay's loop: open_turn, active_add, then n x (sleep ``every``, renew, active_add), terminal."""
    return [("open", 0.0), ("add", 0.0)] + [x for _ in range(n) for x in (("renew", every), ("add", 0.0))] + \
        [("terminal", every / 2)]


def test_a_relay_renewing_on_time_has_no_late_gap() -> None:
    w, store, now = cadence_watch()
    drive(store, now, renewing(0.5, 6))
    assert len(w.gaps("s")) == 7 and late(w, now) == []


def test_a_relay_that_never_renews_is_late() -> None:
    w, store, now = cadence_watch()
    drive(store, now, renewing(0.5, 0)[:-1] + [("content", 1.0), ("terminal", 1.0)])
    got = late(w, now)
    assert len(got) == 1 and "2.020 s measured - 0.000 s observed lag - 0.010 s in store calls = 2.010 s" in got[0], got
    assert "> allowed 0.560 s" in got[0]


def test_a_relay_renewing_at_three_times_its_interval_is_late_every_gap() -> None:
    w, store, now = cadence_watch()
    drive(store, now, renewing(1.5, 3))
    got = late(w, now)  # and the last 0.75 s before the terminal
    assert len(got) == 4 and all("1.510 s measured" in x for x in got[:3]) and "0.760 s measured" in got[3], got


def test_a_gap_explained_by_observed_lag_is_not_late_and_one_longer_than_it_is() -> None:
    """The loop woke 1.5 s late inside a 2 s gap: 0.5 s of its own; 1.0 s late: 1.0 s of its own."""
    for late_by, verdict in ((1.5, []), (1.0, ["1.000 s observed lag"])):
        w, store, now = cadence_watch()
        drive(store, now, [("open", 0.0), ("add", 0.0)])
        w.lag.note_wake(now[0] + 0.02, now[0] + 0.02 + late_by)
        drive(store, now, [("renew", 2.0), ("add", 0.0), ("terminal", 0.1)])
        got = late(w, now)
        assert len(got) == len(verdict) and all(v in g for v, g in zip(verdict, got)), got


def test_the_loops_store_calls_and_failed_renewals_are_not_its_lateness() -> None:
    """A slow ``active_add`` (0.4 s) and a renewal answered by an error start the next gap at their answer."""
    w, store, now = cadence_watch()
    store.add_rtt = 0.4
    store.renew_status = "error"
    drive(store, now, renewing(0.5, 3))
    assert late(w, now) == [] and len(w.renewals["s"]) == 3


def test_the_gap_ends_at_fenced_or_at_the_last_call() -> None:
    """No renewal is owed after a FENCED reply; a run that ended without a terminal is judged to its last call."""
    w, store, now = cadence_watch()
    store.renew_status = "FENCED"
    drive(store, now, renewing(0.5, 1) + [("content", 5.0)])
    assert late(w, now) == [] and w.ended["s"] == 10.52
    w, store, now = cadence_watch()
    drive(store, now, [("open", 0.0), ("content", 0.3), ("content", 0.3)])
    assert w.gaps("s") == [(10.01, 10.63)] and late(w, now)[0].startswith("no lease renewal sent for 0.620 s")


def test_cadence_needs_an_interval_and_a_sampler() -> None:
    w = LeaseWatch(2.0)
    w.opened["s"] = Call(0.0, 0.0)
    w.last_call["s"] = 100.0
    assert w.cadence("s") == []


def test_a_live_stream_is_judged_up_to_until_and_never_past_its_end() -> None:
    w, store, now = cadence_watch()
    drive(store, now, [("open", 0.0), ("add", 0.0)])
    assert w.gaps("s", until=10.3) == [(10.01, 10.3)] and late(w, now) == []
    assert w.cadence("s", until=11.0)[0].startswith("no lease renewal sent for 0.990 s")
    drive(store, now, [("terminal", 0.2)])
    assert w.gaps("s", until=99.0) == [(10.01, pytest.approx(10.22))]
