"""CircuitBreaker: config validation, call/decorator/context, events from replies, retry, CB-5/6/19/26."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pytest_cbchaos.breaker import (BreakerConfig, CircuitBreaker, CircuitBreakerOpenError, CircuitState,
                                    InMemoryStore)
from pytest_cbchaos.breaker.breaker import classify_429, extract_retry_after
from pytest_cbchaos.faults.clock import ManualClock
from pytest_cbchaos.testing.breaker_mutants import GuardlessSuccessStore

from breaker_fakes import HTTPError


class Rec:
    def __init__(self) -> None:
        self.transitions: list[tuple[str, str]] = []
        self.requests: list[str] = []
        self.store: list[str] = []

    def on_transition(self, ev: Any) -> None:
        self.transitions.append((ev.prev_state, ev.state))

    def on_request(self, ev: Any) -> None:
        self.requests.append(ev.outcome)

    def on_store_event(self, ev: Any) -> None:
        self.store.append(ev.kind)


def _cb(store: Any = None, clock: Any = None, **cfg: Any) -> tuple[CircuitBreaker, Rec, ManualClock]:
    clock = clock or ManualClock(1_795_000_000.0)
    rec = Rec()
    conf = BreakerConfig(**{"failure_threshold": 2, "cooldown_s": 10, "initial_backoff_seconds": 0.5, **cfg})
    store = store if store is not None else InMemoryStore(clock=clock)
    return CircuitBreaker("api", conf, store=store, clock=clock, listeners=[rec]), rec, clock


def wait_once_then_ok() -> Any:
    """A probe call that answers 429 with ``Retry-After: 0.1`` once (WAIT: the owner keeps its
    probe), then succeeds."""
    calls = [0]

    def probe() -> str:
        calls[0] += 1
        if calls[0] == 1:
            raise HTTPError(429, "0.1")
        return "ok"
    return probe


@pytest.mark.parametrize("kw,name", [
    ({"failure_threshold": 0}, "failure_threshold"), ({"cooldown_s": -1}, "cooldown_s"),
    ({"max_retries": 0}, "max_retries"), ({"probe_lease_seconds": 0}, "probe_lease_seconds"),
    ({"backoff_multiplier": 0.5}, "backoff_multiplier"), ({"on_store_error": "maybe"}, "on_store_error"),
    ({"probe_abort_policy": "x"}, "probe_abort_policy"), ({"jitter": (2, 1)}, "jitter"),
    ({"cooldown_s": float("nan")}, "cooldown_s"),
])
def test_config_errors_name_the_parameter(kw: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"BreakerConfig.{name}"):
        BreakerConfig(**kw)


def test_trip_cooldown_probe_close_cycle() -> None:
    cb, rec, clock = _cb()
    boom = HTTPError(503)
    for _ in range(2):
        with pytest.raises(HTTPError):
            cb.call(lambda: (_ for _ in ()).throw(boom))
    assert cb.state is CircuitState.OPEN and rec.transitions == [("closed", "open")]
    with pytest.raises(CircuitBreakerOpenError, match="Circuit breaker is open for api") as info:
        cb.call(lambda: 1)
    assert info.value.retry_after == pytest.approx(10, abs=0.01)
    clock.advance(10)
    assert cb.call(lambda: "ok") == "ok"
    assert rec.transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert "rejected_open" in rec.requests and "probe_claimed" in rec.store


def test_decorator_and_context_manager() -> None:
    cb, rec, clock = _cb()

    @cb
    def f(x: int) -> int:
        return x * 2
    assert f(4) == 8
    with pytest.raises(TypeError):
        cb(_async_fn)
    with pytest.raises(HTTPError):
        with cb:
            raise HTTPError(500)
    assert cb.failure_count == 1
    with cb:
        pass
    assert cb.failure_count == 0
    with pytest.raises(KeyError):  # not counted
        with cb:
            raise KeyError("x")
    assert cb.failure_count == 0


async def _async_fn() -> None:
    return None


def test_cb6_success_on_forced_open_emits_nothing() -> None:
    cb, rec, clock = _cb()
    cb.force_open("maintenance", 600)
    assert rec.transitions == [("closed", "open")]
    cb.record_success()
    assert rec.transitions == [("closed", "open")] and cb.state is CircuitState.OPEN
    cb.force_open("again", 10)  # no-op: 600 s remain
    assert rec.transitions == [("closed", "open")] and "open_extended" not in rec.store
    cb.force_open("longer", 1200)
    assert rec.store.count("open_extended") == 1


def test_cb6_mutant_guardless_store_is_caught() -> None:
    cb, rec, clock = _cb(store=GuardlessSuccessStore(clock=ManualClock(1_795_000_000.0)))
    cb.force_open("maintenance", 600)
    cb.record_success()
    assert cb.state is not CircuitState.OPEN  # the defect: a success closed a forced-open circuit


def test_429_policies() -> None:
    assert classify_429(None, 120) == "CAP" and classify_429(5, 120) == "WAIT" and classify_429(500, 120) == "STOP"
    assert classify_429(-1, 120) == "WAIT"
    assert extract_retry_after(HTTPError(429, "nan")) is None
    clock = ManualClock(1_795_000_000.0)
    assert extract_retry_after(HTTPError(429, "Thu, 01 Jan 2026 00:00:00 GMT"), clock) < 0
    cb, rec, clock = _cb()
    with pytest.raises(HTTPError):
        cb.call_with_retry(lambda: (_ for _ in ()).throw(HTTPError(429, "600")))
    assert cb.state is CircuitState.OPEN  # STOP force-opens
    assert cb.store.get_state("api")["open_until"] - clock.time() == pytest.approx(600, abs=0.01)


def test_retry_backoff_then_success_and_nonretryable_not_retried() -> None:
    cb, rec, clock = _cb(failure_threshold=5)
    calls = [0]

    def flaky() -> str:
        calls[0] += 1
        if calls[0] < 3:
            raise HTTPError(502)
        return "ok"
    t0 = clock.monotonic()
    assert cb.call_with_retry(flaky) == "ok" and calls[0] == 3
    assert clock.monotonic() - t0 >= 0.5 * 0.8 + 1.0 * 0.8  # slept the jittered backoff via the clock
    calls[0] = 0

    def bad() -> None:
        calls[0] += 1
        raise ValueError("not transient")
    with pytest.raises(ValueError):
        cb.call_with_retry(bad)
    assert calls[0] == 1


def test_cb19_probe_owner_readmitted_after_429_wait() -> None:
    cb, rec, clock = _cb()
    cb.force_open("x", 10)
    clock.advance(11)
    probe = wait_once_then_ok()
    assert cb.call_with_retry(probe) == "ok"
    assert rec.transitions[-2:] == [("open", "half_open"), ("half_open", "closed")]


def test_cb19_mutant_renew_always_false_is_caught() -> None:
    clock = ManualClock(1_795_000_000.0)

    class NoRenew(InMemoryStore):
        def renew_probe(self, *a: Any, **k: Any) -> bool:
            return False
    cb, rec, clock = _cb(store=NoRenew(clock=clock), clock=clock)
    cb.force_open("x", 10)
    clock.advance(11)
    probe = wait_once_then_ok()
    with pytest.raises(CircuitBreakerOpenError):  # its own claim rejects it: the defect CB-19 guards
        cb.call_with_retry(probe)


def test_cb5_abandoned_probe_is_released() -> None:
    cb, rec, clock = _cb(probe_abort_policy="free")
    cb.force_open("x", 10)
    clock.advance(11)

    def interrupted() -> None:
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        cb.call_with_retry(interrupted)
    s = cb.store.get_state("api")
    assert s["state"] == "half_open" and not s["half_open_probe_active"]  # slot free, no live claim
    cb2, _, _ = _cb(store=cb.store, clock=clock)
    assert cb2.call(lambda: 1) == 1 and cb.state is CircuitState.CLOSED


def test_cb5_release_failure_bounded_by_lease() -> None:
    clock = ManualClock(1_795_000_000.0)

    class ReleaseFails(InMemoryStore):
        def release_probe(self, *a: Any, **k: Any) -> dict:
            from pytest_cbchaos.breaker import StoreUnavailableError
            raise StoreUnavailableError("down")
    store = ReleaseFails(clock=clock)
    cb, rec, _ = _cb(store=store, clock=clock, probe_lease_seconds=5)
    cb.force_open("x", 10)
    clock.advance(11)
    with pytest.raises(KeyError):
        cb.call(lambda: {}["missing"])
    assert "store_error" in rec.store
    with pytest.raises(CircuitBreakerOpenError):
        cb.call(lambda: 1)
    clock.advance(5)
    r = store.try_transition_and_claim_probe("api")
    assert r.won and r.label == "half_open_probe_reclaimed"


def test_listener_errors_never_propagate() -> None:
    class Bad:
        def on_transition(self, ev: Any) -> None:
            raise RuntimeError("listener bug")
    clock = ManualClock(1_795_000_000.0)
    cb = CircuitBreaker("api", BreakerConfig(failure_threshold=1), store=InMemoryStore(clock=clock), clock=clock,
                        listeners=[Bad()])
    cb.record_failure()
    assert cb.state is CircuitState.OPEN


def test_disabled_breaker_does_no_store_io() -> None:
    class NoIO:
        is_async = False

        def __getattr__(self, n: str) -> Any:
            def io(*a: Any, **k: Any) -> Any:
                raise AssertionError(f"store I/O: {n}")
            return io
    cb = CircuitBreaker("api", BreakerConfig(enabled=False), store=NoIO())
    assert cb.call(lambda: 3) == 3 and cb.force_open() is None and cb.reset() is None


def test_cb26_client_time_skew_bounded() -> None:
    """Workers with skewed clocks (client time) see the cooldown end within their skew."""
    base = ManualClock(1_795_000_000.0)
    store = InMemoryStore(clock=base)
    store.force_open("api", 10, now=base.time())
    for skew in (-5.0, -1.0, 0.0, 2.0, 5.0):
        first = None
        for step in range(0, 400):
            t = base.time() + step * 0.05
            r = store.try_transition_and_claim_probe("api", t + skew, 10)
            if r.won:
                first = t
                store.release_probe("api", r.token, "free", recovery_timeout=10, now=t + skew)
                store.reset("api", now=t)
                store.force_open("api", 10, now=base.time())
                break
        assert first is not None
        assert abs((first - base.time()) - (10 - skew)) <= 0.05 + 1e-6


def test_threads_get_their_own_permits() -> None:
    cb, rec, clock = _cb(failure_threshold=100)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                with cb:
                    pass
        except BaseException as exc:
            errors.append(exc)
    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=10)
    assert not errors and cb.failure_count == 0


HB_LEASE_S = 0.3
HB_STEPS = 4  # each moves the store's clock 2/3 of a lease: 8/3 leases in all, well past the first
RENEWED_WITHIN_S = 10.0  # bound of the wait for the heartbeat's next renewal (it comes every lease/3 when idle)


def _heartbeat_run(probe_heartbeat: bool, renewed_within_s: float = RENEWED_WITHIN_S) -> list[str]:
    """The owner's protected call outlives its first lease on the store's clock; after each move of the clock the
    call waits for the owner's heartbeat to renew the lease at the new time, then another breaker tries. The
    clock is a ManualClock, so the lease ends only when the test moves time, never because a busy box ran the
    heartbeat thread late: the renewal is an event waited for, not a race against a 0.2 s margin."""
    from pytest_cbchaos.waiting import wait_until

    clock = ManualClock()
    store = InMemoryStore(clock=clock)
    cb = CircuitBreaker("hb", BreakerConfig(cooldown_s=1, probe_lease_seconds=HB_LEASE_S,
                                            probe_heartbeat=probe_heartbeat), store=store, clock=clock)
    other = CircuitBreaker("hb", BreakerConfig(cooldown_s=1, probe_lease_seconds=HB_LEASE_S,
                                               probe_heartbeat=False), store=store, clock=clock)
    store.force_open("hb", 0)
    seen: list[str] = []

    def renewed_now() -> bool:
        """The lease runs a whole lease from the clock's current time: renewed since the last move."""
        return store.get_state("hb")["probe_lease_until"] >= clock.time() + HB_LEASE_S - 1e-6

    def long_call() -> str:
        for _ in range(HB_STEPS):
            clock.advance(HB_LEASE_S * 2 / 3)  # within the current lease: the owner still holds it
            wait_until(renewed_now, renewed_within_s, "the owner's heartbeat renewing its lease")
            try:
                other.call(lambda: None)
                seen.append("admitted")
            except CircuitBreakerOpenError:
                seen.append("rejected")
        return "done"
    assert cb.call(long_call) == "done"
    assert cb.state is CircuitState.CLOSED
    return seen


def test_heartbeat_keeps_a_long_probe_owned() -> None:
    """A live owner's heartbeat renews the lease: others stay rejected past the first lease."""
    assert _heartbeat_run(probe_heartbeat=True) == ["rejected"] * HB_STEPS


def test_heartbeat_check_fails_without_a_heartbeat() -> None:
    """The check can fail: without heartbeats no renewal comes and the wait for it fails (its bound shortened:
    no renewal is coming, so the bound only decides how long the test waits to say so)."""
    from pytest_cbchaos.waiting import WaitTimeout

    with pytest.raises(WaitTimeout, match="heartbeat renewing"):
        _heartbeat_run(probe_heartbeat=False, renewed_within_s=0.5)


@pytest.mark.parametrize("policy", ["raise", "allow", "deny"])
def test_on_store_error_policy(policy: str) -> None:
    from pytest_cbchaos.breaker import StoreDataError, StoreUnavailableError

    class Down(InMemoryStore):
        exc: Exception = StoreUnavailableError("redis down")

        def try_transition_and_claim_probe(self, *a: Any, **k: Any) -> Any:
            raise self.exc
    store = Down()
    cb = CircuitBreaker("api", BreakerConfig(on_store_error=policy), store=store)
    if policy == "raise":
        with pytest.raises(StoreUnavailableError):
            cb.call(lambda: 1)
    elif policy == "allow":
        assert cb.call(lambda: 1) == 1
    else:
        with pytest.raises(CircuitBreakerOpenError):
            cb.call(lambda: 1)
    store.exc = StoreDataError("WRONGTYPE")  # other store errors always raise
    with pytest.raises(StoreDataError):
        cb.call(lambda: 1)


class _SilentProbeLoss:
    """Mutant mixin: a breaker that drops its ``probe_lost`` events (the async breaker before the fix)."""

    def _emit(self, method: str, ev: Any) -> None:
        if getattr(ev, "kind", None) != "probe_lost":
            super()._emit(method, ev)  # type: ignore[misc]


def _store_events_after_lost_lease(flavour: str, mutant: bool = False) -> list[str]:
    """Store events of a probe owner whose renew fails between attempts (its lease is gone)."""
    import asyncio

    from pytest_cbchaos.breaker import AsyncCircuitBreaker
    from pytest_cbchaos.breaker.store import AsyncInMemoryStore

    clock = ManualClock(1_795_000_000.0)

    class NoRenew(InMemoryStore):
        def renew_probe(self, *a: Any, **k: Any) -> bool:
            return False
    store, rec = NoRenew(clock=clock), Rec()
    conf = BreakerConfig(failure_threshold=2, cooldown_s=10, initial_backoff_seconds=0.5)
    probe = wait_once_then_ok()
    sync_cls = type("M", (_SilentProbeLoss, CircuitBreaker), {}) if mutant else CircuitBreaker
    async_cls = type("M", (_SilentProbeLoss, AsyncCircuitBreaker), {}) if mutant else AsyncCircuitBreaker
    if flavour == "sync":
        cb = sync_cls("api", conf, store=store, clock=clock, listeners=[rec])
        cb.force_open("x", 10)
        clock.advance(11)
        with pytest.raises(CircuitBreakerOpenError):
            cb.call_with_retry(probe)
    else:
        acb = async_cls("api", conf, store=AsyncInMemoryStore(store), clock=clock, listeners=[rec])

        async def main() -> None:
            await acb.force_open("x", 10)
            clock.advance(11)

            async def aprobe() -> str:
                return probe()
            with pytest.raises(CircuitBreakerOpenError):
                await acb.call_with_retry(aprobe)
        asyncio.run(main())
    return rec.store


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_lost_probe_lease_is_reported_by_both_breakers(flavour: str) -> None:
    """A probe owner whose renew fails between attempts emits ``probe_lost`` and claims again, on
    the sync and the async breaker alike (docs/breaker-design.md#events-listeners-and-metrics); a breaker that stays
    silent is caught."""
    events = _store_events_after_lost_lease(flavour)
    assert "probe_lost" in events, events
    assert "probe_lost" not in _store_events_after_lost_lease(flavour, mutant=True)
