"""``call_with_retry``: one retry policy (the sans-I/O ``_Core._retry_plan``) behind both shells.
The same scripted call, clock and jitter seed give the same outcome, calls, events and sleeps
through :class:`CircuitBreaker` and :class:`AsyncCircuitBreaker`."""

from __future__ import annotations

import asyncio
import random
from typing import Any, Callable

import pytest

from pytest_cbchaos.breaker import (AsyncCircuitBreaker, AsyncInMemoryStore, BreakerConfig, CircuitBreaker,
                                    InMemoryStore)
from pytest_cbchaos.faults.clock import ManualClock

from breaker_fakes import HTTPError


class Rec:
    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []

    def on_transition(self, ev: Any) -> None:
        self.log.append(("transition", ev.prev_state, ev.state))

    def on_request(self, ev: Any) -> None:
        self.log.append(("request", ev.outcome))

    def on_store_event(self, ev: Any) -> None:
        self.log.append(("store", ev.kind))


SCRIPTS: dict[str, list[Any]] = {  # one entry per call: an exception to raise, or the result
    "502-twice-then-ok": [HTTPError(502), HTTPError(502), "ok"],
    "503-until-open": [HTTPError(503)] * 5,
    "exhausted": [HTTPError(502)] * 3,
    "429-wait-then-ok": [HTTPError(429, "0.1"), "ok"],
    "429-wait-exhausted": [HTTPError(429, "0.1")] * 3,
    "429-stop": [HTTPError(429, "600")],
    "429-cap": [HTTPError(429), "ok"],
    "not-retryable": [ValueError("not transient")],
    "interrupted": [KeyboardInterrupt()],
}
START = 1_795_000_000.0


def _config(**cfg: Any) -> BreakerConfig:
    return BreakerConfig(**{"failure_threshold": 2, "cooldown_s": 10, "initial_backoff_seconds": 0.5,
                            "max_retries": 3, **cfg})


def _script(steps: list[Any]) -> tuple[Callable[[], Any], list[int]]:
    calls = [0]

    def step() -> Any:
        calls[0] += 1
        item = steps[min(calls[0], len(steps)) - 1]
        if isinstance(item, BaseException):
            raise item
        return item
    return step, calls


def _outcome(run: Callable[[], Any]) -> Any:
    try:
        return ("returned", run())
    except BaseException as exc:  # KeyboardInterrupt too: it is part of the script
        return ("raised", type(exc).__name__)


def run_sync(steps: list[Any], half_open: bool) -> tuple[Any, ...]:
    clock, rec = ManualClock(START), Rec()
    cb = CircuitBreaker("api", _config(), store=InMemoryStore(clock=clock), clock=clock, rng=random.Random(7),
                        listeners=[rec])
    if half_open:
        cb.force_open("x", 10)
        clock.advance(11)
    fn, calls = _script(steps)
    out = _outcome(lambda: cb.call_with_retry(fn))
    return out, calls[0], rec.log, round(clock.monotonic() - START, 6), cb.store.get_state("api")["state"]


def run_async(steps: list[Any], half_open: bool) -> tuple[Any, ...]:
    clock, rec = ManualClock(START), Rec()
    store = AsyncInMemoryStore(clock=clock)
    cb = AsyncCircuitBreaker("api", _config(), store=store, clock=clock, rng=random.Random(7), listeners=[rec])
    fn, calls = _script(steps)

    async def call() -> Any:
        return fn()

    async def main() -> Any:
        if half_open:
            await cb.force_open("x", 10)
            clock.advance(11)
        return await _capture(cb.call_with_retry(call))
    out = asyncio.run(main())
    return out, calls[0], rec.log, round(clock.monotonic() - START, 6), store.inner.get_state("api")["state"]


async def _capture(aw: Any) -> Any:
    try:
        return ("returned", await aw)
    except BaseException as exc:
        return ("raised", type(exc).__name__)


@pytest.mark.parametrize("half_open", [False, True], ids=["closed", "half-open-probe"])
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_sync_and_async_retry_agree(name: str, half_open: bool) -> None:
    sync, asyn = run_sync(SCRIPTS[name], half_open), run_async(SCRIPTS[name], half_open)
    assert sync == asyn
    assert sync[1] >= 1  # the call ran: the comparison compares something


def test_the_parity_check_sees_a_different_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutant: an async shell that does not back off between retries is told apart."""
    from pytest_cbchaos.breaker.breaker import _Core

    real = _Core._delay
    monkeypatch.setattr(_Core, "_delay",
                        lambda self, d: 0.0 if isinstance(self, AsyncCircuitBreaker) else real(self, d))
    assert run_sync(SCRIPTS["502-twice-then-ok"], False) != run_async(SCRIPTS["502-twice-then-ok"], False)
