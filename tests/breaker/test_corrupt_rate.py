"""docs/breaker-design.md#codec-and-corrupt-fields / docs/breaker-design.md#events-listeners-and-metrics: the
breaker's ``corrupt_field`` store event and its listener-failure log lines are rate-limited per key on the injectable
clock (no sleeps: a ``ManualClock`` is advanced), with the count of suppressed events carried by the next emitted one.
``NoRateLimitBreaker`` must fail both."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pytest_cbchaos.breaker import AsyncCircuitBreaker, BreakerConfig, CircuitBreaker, InMemoryStore
from pytest_cbchaos.breaker.breaker import StoreEvent
from pytest_cbchaos.breaker.ratelimit import EventRateLimiter
from pytest_cbchaos.breaker.store import AsyncInMemoryStore
from pytest_cbchaos.faults.clock import ManualClock
from pytest_cbchaos.testing.breaker_mutants import BREAKER_MUTANTS, NoRateLimitBreaker

CALLS = 10


class _Events:
    def __init__(self) -> None:
        self.store: list[StoreEvent] = []

    def on_store_event(self, ev: StoreEvent) -> None:
        self.store.append(ev)

    def corrupt(self) -> list[StoreEvent]:
        return [e for e in self.store if e.kind == "corrupt_field"]


def corrupt_rate_violations(cls: type = CircuitBreaker) -> list[str]:
    """A corrupt ``state`` reads ``closed`` and a success on a zero count writes nothing (S2), so every
    call's outcome reply names the same corrupt field: the event storm the limiter exists for."""
    v: list[str] = []
    clock = ManualClock()
    store = InMemoryStore(clock=clock)
    store.raw_set("b", {"state": "bogus"})
    ev = _Events()
    cb = cls("b", BreakerConfig(), store=store, clock=clock, listeners=[ev])
    interval = cb.CORRUPT_EVENT_INTERVAL
    for _ in range(CALLS):
        assert cb.call(lambda: 1) == 1
    got = ev.corrupt()
    if [(e.detail, e.suppressed) for e in got] != [("state", 0)]:
        v.append(f"{CALLS} corrupt replies in one interval gave {len(got)} events (want 1, suppressed 0)")
    clock.advance(interval / 2)
    cb.call(lambda: 1)
    if len(ev.corrupt()) != len(got):
        v.append("an event inside the interval was not suppressed")
    clock.advance(interval / 2)
    cb.call(lambda: 1)
    last = ev.corrupt()[-1]
    if len(ev.corrupt()) != len(got) + 1 or last.suppressed != CALLS:
        v.append(f"after the interval: want one event carrying {CALLS} suppressed, got {ev.corrupt()[len(got):]}")
    # another field set has its own budget: emitted at once, nothing suppressed
    store.raw_set("b", {"state": "bogus", "open_until": "nan"})
    n = len(ev.corrupt())
    cb.call(lambda: 1)
    new = ev.corrupt()[n:]
    if [(sorted(e.detail.split(",")), e.suppressed) for e in new] != [(["open_until", "state"], 0)]:
        v.append(f"a new field set was not emitted at once: {new}")
    return v


def listener_log_violations(cls: type, caplog: pytest.LogCaptureFixture) -> list[str]:
    """A listener that raises on every event: one log line per interval, the next one counting the rest."""

    class Broken:
        def on_request(self, ev: Any) -> None:
            raise RuntimeError("listener bug")

    v: list[str] = []
    clock = ManualClock()
    cb = cls("b", BreakerConfig(), store=InMemoryStore(clock=clock), clock=clock, listeners=[Broken()])
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="pytest_cbchaos.breaker"):
        for _ in range(CALLS):
            cb.call(lambda: 1)  # never propagates the listener's exception
        first = [r for r in caplog.records if "listener" in r.getMessage()]
        clock.advance(cb.LISTENER_LOG_INTERVAL)
        cb.call(lambda: 1)
        logged = [r for r in caplog.records if "listener" in r.getMessage()]
    if len(first) != 1:
        v.append(f"{CALLS} listener failures in one interval gave {len(first)} log lines (want 1)")
    if len(logged) != len(first) + 1 or getattr(logged[-1], "suppressed", None) != CALLS - 1:
        v.append(f"after the interval: want one line counting {CALLS - 1} suppressed, got "
                 f"{[r.getMessage() for r in logged[len(first):]]}")
    elif f"{CALLS - 1} similar failures suppressed" not in logged[-1].getMessage():
        v.append(f"the suppressed count is not in the message: {logged[-1].getMessage()!r}")
    return v


def test_corrupt_field_event_is_rate_limited() -> None:
    assert corrupt_rate_violations() == []


def test_listener_failure_logging_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    assert listener_log_violations(CircuitBreaker, caplog) == []


def test_no_rate_limit_mutant_is_caught(caplog: pytest.LogCaptureFixture) -> None:
    assert BREAKER_MUTANTS["no_rate_limit"][0] is NoRateLimitBreaker
    assert any("events" in x for x in corrupt_rate_violations(NoRateLimitBreaker))
    assert any("log lines" in x for x in listener_log_violations(NoRateLimitBreaker, caplog))


def test_async_breaker_shares_the_limit() -> None:
    clock = ManualClock()
    inner = InMemoryStore(clock=clock)
    inner.raw_set("b", {"state": "bogus"})
    ev = _Events()
    cb = AsyncCircuitBreaker("b", store=AsyncInMemoryStore(inner), clock=clock, listeners=[ev])

    async def one() -> int:
        return 1

    async def main() -> None:
        for _ in range(CALLS):
            await cb.call(one)
        clock.advance(cb.CORRUPT_EVENT_INTERVAL)
        await cb.call(one)
    asyncio.run(main())
    assert [(e.detail, e.suppressed) for e in ev.corrupt()] == [("state", 0), ("state", CALLS - 1)]


def test_limiter_keys_and_bounds() -> None:
    clock = ManualClock()
    lim = EventRateLimiter(5, clock, max_keys=2)
    assert [lim.admit("a"), lim.admit("a"), lim.admit("b"), lim.admit("a")] == [0, None, 0, None]
    assert lim.pending("a") == 2
    lim.admit("c")  # a third key evicts the oldest ("a"): it starts again, admitted
    assert lim.admit("a") == 0
    clock.advance(5)
    assert lim.admit("b") == 0 and lim.admit("b") is None
    assert EventRateLimiter(0, clock).admit("k") == 0


@pytest.mark.parametrize("kw,match", [({"interval": -1}, "interval must be a finite number >= 0"),
                                      ({"interval": float("nan")}, "interval"), ({"interval": True}, "interval"),
                                      ({"interval": 1, "max_keys": 0}, "max_keys must be an int >= 1")])
def test_limiter_rejects_bad_arguments(kw: dict, match: str) -> None:
    interval = kw.pop("interval")
    with pytest.raises(ValueError, match=match):
        EventRateLimiter(interval, ManualClock(), **kw)
