"""``CircuitBreaker`` and ``AsyncCircuitBreaker`` over one sans-I/O core (docs/breaker-design.md#breaker-api).

The core (``_Core``) turns store replies into decisions, events and retry actions; the shells
only do store I/O and sleeps (through the injected clock; the async shell never blocks the loop).
Transition events are emitted iff the op's own reply says ``_applied`` (or ``_duplicate``) and
``_prev_state != _new_state`` — never from a separate read.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import functools
import inspect
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Awaitable, Callable

from .errors import StoreContentionError, StoreError, StoreIndeterminateError, StoreUnavailableError
from .failures import FailurePredicate, counts_as_failure, extract_status_code
from .plan import Plan, adrive, drive
from .ratelimit import EventRateLimiter
from ..renames import accepts_renamed
from .store import HotOps, InMemoryStore, OpIds

log = logging.getLogger("pytest_cbchaos.breaker")


class CircuitState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreakerOpenError(Exception):
    def __init__(self, backend: str, state: str, retry_after: float | None = None) -> None:
        super().__init__(f"Circuit breaker is {state} for {backend}")
        self.backend, self.state, self.retry_after = backend, state, retry_after


def _num(name: str, v: Any, lo: float, strict: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo or (strict and v == lo):
        raise ValueError(f"BreakerConfig.{name} must be a finite number {'>' if strict else '>='} {lo}, got {v!r}")
    return v


@accepts_renamed
@dataclass(frozen=True)
class BreakerConfig:
    """Breaker settings, validated on construction (docs/breaker-design.md#breaker-api)."""

    enabled: bool = True
    failure_threshold: int = 5
    cooldown_s: float = 60
    backoff_multiplier: float = 2.0
    max_backoff_seconds: float = 300.0
    initial_backoff_seconds: float = 1.0
    jitter: tuple[float, float] = (0.8, 1.2)
    retry_after_threshold_seconds: float = 120.0
    retryable_status_codes: tuple[int, ...] = (500, 502, 503, 529)
    max_retries: int = 3
    probe_lease_seconds: float = 30.0
    probe_max_hold_seconds: float = 300.0
    probe_heartbeat: bool = True
    probe_abort_policy: str = "reopen"
    probe_release_timeout: float = 2.0
    on_store_error: str = "raise"
    # what counts as a failure (docs/breaker.md, "What counts as a failure"): these classes always do;
    # ``is_failure`` replaces the default rule (transport errors + ``retryable_status_codes``)
    failure_exceptions: tuple[type[BaseException], ...] = ()
    is_failure: FailurePredicate | None = None

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "max_retries"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"BreakerConfig.{name} must be an int >= 1, got {v!r}")
        _num("cooldown_s", self.cooldown_s, 0, True)
        _num("backoff_multiplier", self.backoff_multiplier, 1.0, False)
        _num("max_backoff_seconds", self.max_backoff_seconds, 1.0, False)
        _num("initial_backoff_seconds", self.initial_backoff_seconds, 0, True)
        _num("retry_after_threshold_seconds", self.retry_after_threshold_seconds, 0, False)
        _num("probe_lease_seconds", self.probe_lease_seconds, 0, True)
        _num("probe_max_hold_seconds", self.probe_max_hold_seconds, 0, True)
        _num("probe_release_timeout", self.probe_release_timeout, 0, True)
        if len(self.jitter) != 2 or not 0 < self.jitter[0] <= self.jitter[1]:
            raise ValueError(f"BreakerConfig.jitter must be (low, high) with 0 < low <= high, got {self.jitter!r}")
        if self.probe_abort_policy not in ("reopen", "free"):
            raise ValueError(f"BreakerConfig.probe_abort_policy must be 'reopen' or 'free', got {self.probe_abort_policy!r}")
        if self.on_store_error not in ("raise", "allow", "deny"):
            raise ValueError(f"BreakerConfig.on_store_error must be 'raise', 'allow' or 'deny', got {self.on_store_error!r}")
        if not all(isinstance(c, int) for c in self.retryable_status_codes):
            raise ValueError(f"BreakerConfig.retryable_status_codes must be ints, got {self.retryable_status_codes!r}")
        if not isinstance(self.failure_exceptions, tuple) or not all(
                isinstance(c, type) and issubclass(c, BaseException) for c in self.failure_exceptions):
            raise ValueError("BreakerConfig.failure_exceptions must be a tuple of exception classes, "
                             f"got {self.failure_exceptions!r}")
        if self.is_failure is not None and not callable(self.is_failure):
            raise ValueError(f"BreakerConfig.is_failure must be a callable (exception -> bool) or None, "
                             f"got {self.is_failure!r}")


@dataclass(frozen=True)
class TransitionEvent:
    backend: str
    op: str
    op_id: str | None
    prev_state: str
    state: str
    cause: str = ""
    now: float | None = None
    agent_id: str | None = None


@dataclass(frozen=True)
class RequestEvent:
    backend: str
    outcome: str
    latency_seconds: float = 0.0
    agent_id: str | None = None


@dataclass(frozen=True)
class StoreEvent:
    backend: str
    kind: str
    detail: str = ""
    now: float | None = None
    suppressed: int = 0  # rate-limited kinds (corrupt_field): same-key events dropped since the last one


@dataclass
class Permit:
    admitted: bool
    probe_token: str | None
    state: str
    op_id: str | None = None
    resolved: bool = field(default=False, repr=False)
    _breaker: Any = field(default=None, repr=False)

    def success(self) -> Any:
        return self._breaker._resolve(self, "success")

    def failure(self, error_type: str | None = None) -> Any:
        return self._breaker._resolve(self, "failure", error_type)

    def release(self) -> Any:
        return self._breaker._resolve(self, "release")

    def __enter__(self) -> "Permit":
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            self.success()
        elif isinstance(ev, Exception) and self._breaker._counted(ev):
            self.failure(type(ev).__name__)
        else:
            self.release()

    async def __aenter__(self) -> "Permit":
        return self

    async def __aexit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            await self.success()
        elif isinstance(ev, Exception) and self._breaker._counted(ev):
            await self.failure(type(ev).__name__)
        else:
            await self.release()


# ---- classification ---------------------------------------------------------------------------

def extract_retry_after(exc: BaseException, clock: Any = None) -> float | None:
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None) or getattr(exc, "headers", None) or {}
    raw = None
    try:
        raw = headers.get("retry-after") or headers.get("Retry-After")
    except AttributeError:
        return None
    if raw is None:
        return None
    try:
        v = float(raw)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        pass
    try:
        dt = parsedate_to_datetime(str(raw))
        now = clock.time() if clock is not None else __import__("time").time()
        return dt.timestamp() - now
    except (TypeError, ValueError, IndexError):
        return None


def classify_429(retry_after: float | None, threshold: float) -> str:
    if retry_after is None:
        return "CAP"
    return "WAIT" if retry_after <= threshold else "STOP"


# ---- sans-I/O core ----------------------------------------------------------------------------

_PERMITS: contextvars.ContextVar[tuple[Permit, ...]] = contextvars.ContextVar("cbchaos_breaker_permits", default=())


class _Core:
    # Rate limits (docs/breaker-design.md#codec-and-corrupt-fields,
    # docs/breaker-design.md#events-listeners-and-metrics), on the injected clock's monotonic time: at most one
    # ``corrupt_field`` event per set of field names, and one log line per failing listener method and exception type,
    # per interval; the suppressed count rides on the next one.
    CORRUPT_EVENT_INTERVAL = 60.0
    LISTENER_LOG_INTERVAL = 60.0

    def __init__(self, backend: str, config: BreakerConfig | None, store: Any, clock: Any, rng: Any,
                 metrics: Any, listeners: Any) -> None:
        from pytest_cbchaos.faults.clock import SYSTEM_CLOCK

        if not isinstance(backend, str):
            raise ValueError(f"backend must be a str, got {backend!r}")
        self.backend = backend
        self.config = config or BreakerConfig()
        self.clock = clock or SYSTEM_CLOCK
        self.rng = rng or random.Random()
        self.metrics = metrics
        self.listeners = list(listeners)
        self.store = store
        self._key = f"{id(self)}"
        self._op_ids = OpIds()
        self._noted: Any = None  # the fast view ``_note_record`` last saw unchanged (hot path)
        self._ev_src: Callable[[int], tuple[int, list[tuple[str, str]]]] | None = None
        self._ev_seen = 0
        self._ev_lock = threading.Lock()
        self._hw_gen = 0  # highest probe_generation seen in a reply (generations never go back)
        self._hw_hist = False  # a reply showed history (recent_ops or a generation)
        self._corrupt_limiter = EventRateLimiter(self.CORRUPT_EVENT_INTERVAL, self.clock)
        self._listener_log_limiter = EventRateLimiter(self.LISTENER_LOG_INTERVAL, self.clock)

    def _bind_store_events(self) -> None:
        """Forward the store's own events (e.g. ``scripting_fallback``) to ``on_store_event``; op ids come
        from the store's ``op_ids`` when it has one (see ``_next_op_id``)."""
        ids = getattr(self.store, "op_ids", None)
        if isinstance(ids, OpIds):
            self._op_ids = ids
        has = self.config.enabled and getattr(type(self.store), "store_events_since", None) is not None
        src = self.store.store_events_since if has else None
        self._ev_src = src
        if src is not None:
            self._ev_seen = src(1 << 62)[0]

    def _pump_store_events(self) -> None:
        src = self._ev_src
        if src is None or src(self._ev_seen)[0] == self._ev_seen:
            return
        with self._ev_lock:
            total, evs = src(self._ev_seen)
            self._ev_seen = total
        for kind, detail in evs:
            self._emit("on_store_event", StoreEvent(self.backend, kind, detail))

    def _note_view(self, v: Any, t: float) -> None:
        """``_note_record`` of a hot-path no-op's reply (the fast view's template at ``t``). Noting one
        reply twice in a row changes nothing, so the view is remembered and the next no-op on the
        same view skips this (any other note forgets it)."""
        self._note_record(self._hot.noop_reply(v, t))  # type: ignore[attr-defined]
        self._noted = v

    def _note_record(self, d: dict, token: str | None = None) -> None:
        """Emit ``record_missing`` when a reply shows the record was lost (DEL, FLUSHALL, eviction,
        expiry, restart: X3): its generation went back, a held token's generation is ahead of it, or
        it has no history at all after one was seen. Generations never decrease otherwise. A hot op's brief
        no-op reply gives the count of the ``recent_ops`` entries it left out (``_recent_ops_omitted``)."""
        self._noted = None
        gen = d.get("probe_generation")
        if gen is None:
            return
        ops = d.get("recent_ops") or d.get("_recent_ops_omitted")
        lost = gen < self._hw_gen or (self._hw_hist and not gen and not ops)
        if token and not lost:  # generations are unique per record lifetime: an equal one with another
            head = token.split(":", 1)[0]  # token means the record was lost and re-claimed since
            cur = d.get("probe_token") or ""
            lost = head.isdigit() and (int(head) > gen or (int(head) == gen and cur not in ("", token)))
        if lost:
            detail = f"generation {gen} (seen {self._hw_gen}), token {token or '-'}"
            self._hw_gen, self._hw_hist = gen, bool(gen or ops)
            self._emit("on_store_event", StoreEvent(self.backend, "record_missing", detail, d.get("_now")))
            return
        if gen > self._hw_gen:
            self._hw_gen = gen
        if ops and not self._hw_hist:
            self._hw_hist = True

    def _next_op_id(self) -> str:
        """A unique 32-hex op id: random prefix per breaker *and process* (``OpIds`` renews it in a forked
        child, which must not repeat its parent's ids: a store would take them for duplicates) plus a
        counter. The store's own generator when it has one (``op_ids``, e.g. ``InMemoryStore``), so the hot
        path (docs/breaker-design.md#hot-path) draws the ids the plain path would."""
        return self._op_ids()

    # events
    def _emit(self, method: str, ev: Any) -> None:
        for lst in self.listeners:
            fn = getattr(lst, method, None)
            if fn is None:
                continue
            try:
                fn(ev)
            except Exception as exc:  # listener errors never propagate; logged rate-limited
                n = self._listener_log_limiter.admit((id(lst), method, type(exc).__name__))
                if n is not None:
                    log.exception("breaker listener %r failed in %s (%d similar failures suppressed)", lst,
                                  method, n, extra={"backend": self.backend, "suppressed": n})

    def _transition_from_reply(self, op: str, d: dict, cause: str = "", op_id: str | None = None,
                               token: str | None = None) -> None:
        self._pump_store_events()
        self._note_record(d, token)
        if (d.get("_applied") or d.get("_duplicate")) and d["_prev_state"] != d["_new_state"]:
            if self.metrics is not None:
                self.metrics.record_state_transition(self.backend, d["_prev_state"], d["_new_state"])
            self._emit("on_transition", TransitionEvent(self.backend, op, op_id, d["_prev_state"], d["_new_state"],
                                                        cause, d.get("_now")))
        elif d.get("_applied") and op == "force_open" and d["_prev_state"] == "open":
            self._emit("on_store_event", StoreEvent(self.backend, "open_extended", "", d.get("_now")))
        if d.get("_corrupt"):
            self._corrupt_event(d)

    def _corrupt_event(self, d: dict) -> None:
        """``corrupt_field``, at most one per field-name set per CORRUPT_EVENT_INTERVAL
        (docs/breaker-design.md#codec-and-corrupt-fields)."""
        n = self._corrupt_limiter.admit(frozenset(d["_corrupt"]))
        if n is not None:
            self._emit("on_store_event", StoreEvent(self.backend, "corrupt_field", ",".join(d["_corrupt"]),
                                                    d.get("_now"), n))

    def _request(self, outcome: str, latency: float = 0.0, agent_id: str | None = None) -> None:
        if self.metrics is not None:
            self.metrics.record_request(self.backend, outcome, latency)
        if self.listeners:  # no event object when nobody listens (hot path)
            self._emit("on_request", RequestEvent(self.backend, outcome, latency, agent_id))

    def _permit_from_claim(self, cr: Any) -> Permit:
        d = cr.record
        if self._ev_src is not None:
            self._pump_store_events()
        self._note_record(d)
        if cr.won:
            self._emit("on_store_event", StoreEvent(
                self.backend, "probe_reclaimed" if cr.label == "half_open_probe_reclaimed" else "probe_claimed",
                cr.label, d.get("_now")))
            self._transition_from_reply("gate", d)
            permit = Permit(True, cr.token, d["_prev_state"], None, _breaker=self)
            if self.config.probe_heartbeat:
                self._start_heartbeat(permit)
            return permit
        if d["_prev_state"] == "closed":
            return Permit(True, None, "closed", None, _breaker=self)
        if d.get("_applied"):
            self._transition_from_reply("gate", d)
        outcome = "rejected_open" if d["_prev_state"] == "open" else "rejected_half_open"
        self._request(outcome)
        raise CircuitBreakerOpenError(self.backend, d["_prev_state"], cr.retry_after)

    def _store_error_gate(self, exc: BaseException) -> Permit:
        self._pump_store_events()
        self._emit("on_store_event", StoreEvent(self.backend, "store_error", repr(exc)))
        pol = self.config.on_store_error
        if isinstance(exc, (StoreUnavailableError, StoreContentionError)) and pol == "allow":
            return Permit(True, None, "closed", None, _breaker=self)
        if isinstance(exc, (StoreUnavailableError, StoreContentionError)) and pol == "deny":
            raise CircuitBreakerOpenError(self.backend, "open", None) from exc
        raise exc

    def _counted(self, exc: BaseException) -> bool:
        code = extract_status_code(exc)
        if code == 429:
            return classify_429(extract_retry_after(exc, self.clock), self.config.retry_after_threshold_seconds) == "CAP"
        return self._is_failure(exc)

    def _is_failure(self, exc: BaseException) -> bool:
        """Not a 429: counted per ``BreakerConfig`` (``failure_exceptions``, ``is_failure``, the default)."""
        c = self.config
        return counts_as_failure(exc, c.retryable_status_codes, c.failure_exceptions, c.is_failure)

    def _record_failed(self, kind: str, exc: StoreError) -> None:
        """Both resends of an outcome failed: one ``indeterminate`` (the op may have run) or
        ``store_error`` event, and a log line; the caller's result is never replaced."""
        kind_ev = "indeterminate" if isinstance(exc, StoreIndeterminateError) else "store_error"
        self._emit("on_store_event", StoreEvent(self.backend, kind_ev, repr(exc)))
        log.warning("breaker %s: recording %s failed: %r", self.backend, kind, exc)

    def _resolve_plan(self, permit: Permit, kind: str) -> tuple[str, dict] | None:
        """Which store op resolves a permit: (method, kwargs) or None."""
        if permit.resolved or not self.config.enabled:
            return None
        permit.resolved = True
        self._stop_heartbeat(permit)
        c = self.config
        if permit.probe_token:
            outcome = {"success": "success", "failure": "failure"}.get(kind)
            if outcome is None:
                outcome = "abort" if c.probe_abort_policy == "reopen" else "free"
            return "release_probe", dict(probe_token=permit.probe_token, outcome=outcome,
                                         recovery_timeout=c.cooldown_s)
        if kind == "success":
            return "atomic_record_success", {}
        if kind == "failure":
            return "atomic_record_failure", dict(failure_threshold=c.failure_threshold, recovery_timeout=c.cooldown_s)
        return None

    def _push(self, p: Permit) -> None:
        _PERMITS.set(_PERMITS.get() + (p,))

    def _pop(self) -> Permit | None:
        st = _PERMITS.get()
        for i in range(len(st) - 1, -1, -1):
            if st[i]._breaker is self:
                _PERMITS.set(st[:i] + st[i + 1:])
                return st[i]
        return None

    def _start_heartbeat(self, permit: Permit) -> None:  # overridden by the shells
        pass

    def _stop_heartbeat(self, permit: Permit) -> None:
        hb = getattr(permit, "_hb", None)
        if hb is not None:
            hb.set()

    def _delay(self, delay: float) -> float:
        lo, hi = self.config.jitter
        return min(delay, self.config.max_backoff_seconds) * self.rng.uniform(lo, hi)

    def _retry_plan(self, call: Callable[[], Any], max_retries: int | None, agent_id: str | None,
                    sleep: Callable[[float], Any]) -> Plan:
        """The retry policy of ``call_with_retry``, sans I/O: it yields each I/O step as a zero-argument
        callable and gets back its result (or its exception, thrown in at the ``yield``); the shells'
        drivers (:func:`.plan.drive`, :func:`.plan.adrive`) run the steps."""
        c = self.config
        attempts = max_retries or c.max_retries
        delay = c.initial_backoff_seconds
        permit: Permit | None = None
        for attempt in range(1, attempts + 1):
            if permit is not None and permit.probe_token and not permit.resolved:
                token = permit.probe_token
                try:
                    ok = yield lambda: self.store.renew_probe(self.backend, token,
                                                              lease_seconds=c.probe_lease_seconds)
                except StoreError:
                    ok = False
                if not ok:
                    self._emit("on_store_event", StoreEvent(self.backend, "probe_lost", ""))
                    permit = None
            if permit is None or permit.resolved:
                permit = yield self.acquire
            held: Permit = permit
            t0 = self.clock.monotonic()
            try:
                result = yield call
            except Exception as exc:
                self._request("failure", self.clock.monotonic() - t0, agent_id)
                code = extract_status_code(exc)
                if code == 429:
                    ra = extract_retry_after(exc, self.clock)
                    kind = classify_429(ra, c.retry_after_threshold_seconds)
                    if kind == "STOP":
                        held.resolved = True
                        self._stop_heartbeat(held)
                        yield lambda: self.force_open("429 STOP", ra or 0)
                        raise
                    if kind == "WAIT":
                        if attempt == attempts:
                            yield held.release
                            raise
                        yield lambda: sleep(max(0.0, ra or 0.0))
                        continue
                if code == 429 or self._is_failure(exc):
                    label = "429_cap" if code == 429 else f"http_{code}" if code is not None else type(exc).__name__
                    d = yield lambda: held.failure(label)
                    if attempt == attempts or (d and d.get("state") == "open"):
                        raise
                    yield lambda: sleep(self._delay(delay))
                    delay *= c.backoff_multiplier
                    permit = None
                    continue
                yield held.release
                raise
            except GeneratorExit:  # the plan is discarded unfinished: no step may run any more
                raise
            except BaseException:
                yield held.release  # bounded by the store's own timeouts; the lease bounds a failure
                raise
            yield held.success
            self._request("success", self.clock.monotonic() - t0, agent_id)
            return result
        raise AssertionError("unreachable")  # pragma: no cover


class CircuitBreaker(_Core):
    """Synchronous breaker; ``store=None`` means a private ``InMemoryStore`` on the same clock."""

    def __init__(self, backend: str, config: BreakerConfig | None = None, *, store: Any = None, clock: Any = None,
                 rng: Any = None, metrics: Any = None, listeners: Any = ()) -> None:
        if store is not None and getattr(store, "is_async", False):
            raise TypeError("CircuitBreaker needs a sync store; use AsyncCircuitBreaker for an async store")
        super().__init__(backend, config, store, clock, rng, metrics, listeners)
        if self.store is None:
            self.store = InMemoryStore(clock=self.clock, probe_lease_seconds=self.config.probe_lease_seconds)
        self._bind_store_events()
        # the hot path of ``call`` (docs/breaker-design.md#hot-path): the store's HotOps, breaker enabled
        # (looked up on the type: a forwarding ``__getattr__``, e.g. AsyncInMemoryStore's, offers none)
        hot_ops = getattr(type(self.store), "hot_ops", None)
        self._hot: HotOps | None = hot_ops(self.store) if hot_ops is not None and self.config.enabled else None
        if self._hot is not None:
            self._op_ids = self._hot.op_ids
        self._counter = self._op_ids.counter
        self._lease = self.config.probe_lease_seconds

    def _start_heartbeat(self, permit: Permit) -> None:
        """Renew the claim every L/3 (real time) until it resolves, for at most probe_max_hold_seconds."""
        stop = threading.Event()
        permit._hb = stop  # type: ignore[attr-defined]
        lease, hold = self.config.probe_lease_seconds, self.config.probe_max_hold_seconds
        token = permit.probe_token

        def beat() -> None:
            start = time.monotonic()
            while not stop.wait(lease / 3) and time.monotonic() - start < hold:
                try:
                    ok = self.store.renew_probe(self.backend, token, lease_seconds=lease)
                except StoreError:
                    continue  # the lease bounds the damage
                if not ok:
                    self._emit("on_store_event", StoreEvent(self.backend, "probe_lost", token or ""))
                    return
        threading.Thread(target=beat, name=f"cbchaos-heartbeat-{self.backend}", daemon=True).start()

    # permits
    def acquire(self) -> Permit:
        if not self.config.enabled:
            return Permit(True, None, "closed", None, _breaker=self)
        try:
            cr = self.store.try_transition_and_claim_probe(self.backend, None, self.config.cooldown_s,
                                                           lease_seconds=self.config.probe_lease_seconds)
        except StoreError as exc:
            return self._store_error_gate(exc)
        return self._permit_from_claim(cr)

    def _resolve(self, permit: Permit, kind: str, error_type: str | None = None) -> dict | None:
        plan = self._resolve_plan(permit, kind)
        if plan is None:
            return None
        method, kw = plan
        op_id = self._next_op_id()
        for attempt in range(2):  # one resend with the same op id; never replaces the call's result
            try:
                d = getattr(self.store, method)(self.backend, op_id=op_id, **kw)
                self._transition_from_reply(method, d, error_type or kind, op_id, kw.get("probe_token"))
                return d
            except StoreError as exc:
                self._pump_store_events()
                if attempt == 1:
                    self._record_failed(kind, exc)
        return None

    def _hot_success_failed(self, n: int) -> None:
        """After ``hot_success`` raised: the rest of ``_resolve``'s success (its one resend, same op id)."""
        self._pump_store_events()
        op_id = self._op_ids.format(n)
        try:
            d = self.store.atomic_record_success(self.backend, op_id=op_id)
            self._transition_from_reply("atomic_record_success", d, "success", op_id)
        except StoreError as exc:
            self._pump_store_events()
            self._record_failed("success", exc)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hot = self._hot
        permit: Permit | None = None
        if hot is None:
            permit = self.acquire()
        else:  # hot path (docs/breaker-design.md#hot-path): the same ops, no reply or permit built for no-ops
            try:
                r = hot.hot_gate(self.backend, next(self._counter), self._lease)
            except StoreError as exc:
                self._store_error_gate(exc)  # raises, or admits as CLOSED: resolved below as the hot path resolves
            else:
                if r.__class__ is not tuple:  # a reply: not a no-op on a clean CLOSED record
                    permit = self._permit_from_claim(r)
                    if permit.probe_token is None:
                        permit = None  # admitted in CLOSED: resolved below as the hot path resolves
                else:
                    if self._ev_src is not None:
                        self._pump_store_events()
                    if r[0] is not self._noted:
                        self._note_view(*r)
        observed = self.metrics is not None or self.listeners  # read once: no clock read when nobody listens
        t0 = self.clock.monotonic() if observed else 0.0
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            if permit is None:
                permit = Permit(True, None, "closed", None, _breaker=self)
            if self._counted(exc):
                permit.failure(type(exc).__name__)
            else:
                permit.release()
            if observed:
                self._request("failure", self.clock.monotonic() - t0)
            raise
        except BaseException:
            if permit is not None:
                permit.release()  # a tokenless permit's release is no store op
            raise
        if permit is not None:
            permit.success()
        else:
            n = next(self._counter)
            try:
                r = hot.hot_success(self.backend, n)  # type: ignore[union-attr]
            except StoreError:
                self._hot_success_failed(n)
            else:
                if r.__class__ is not tuple:
                    self._transition_from_reply("atomic_record_success", r, "success", self._op_ids.format(n))
                else:
                    if self._ev_src is not None:
                        self._pump_store_events()
                    if r[0] is not self._noted:
                        self._note_view(*r)
        if observed:
            self._request("success", self.clock.monotonic() - t0)
        return result

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):
            raise TypeError("CircuitBreaker cannot decorate a coroutine function; use AsyncCircuitBreaker")

        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            return self.call(fn, *a, **k)
        return wrapper

    def __enter__(self) -> Permit:
        p = self.acquire()
        self._push(p)
        return p

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        p = self._pop()
        if p is not None:
            p.__exit__(et, ev, tb)

    # massgen-style manual API
    def should_block(self) -> bool:
        try:
            p = self.acquire()
        except CircuitBreakerOpenError:
            return True
        if p.probe_token:
            self._push(p)
        return False

    def record_success(self) -> None:
        p = self._pop() or Permit(True, None, "closed", _breaker=self)
        p.success()

    def record_failure(self, error_type: str | None = None, error_message: str | None = None) -> None:
        p = self._pop() or Permit(True, None, "closed", _breaker=self)
        p.failure(error_type)

    def force_open(self, reason: str = "", open_for_seconds: float = 0) -> dict | None:
        if not self.config.enabled:
            return None
        d = self.store.force_open(self.backend, max(self.config.cooldown_s, open_for_seconds))
        self._transition_from_reply("force_open", d, reason)
        return d

    def reset(self) -> dict | None:
        if not self.config.enabled:
            return None
        d = self.store.reset(self.backend)
        self._transition_from_reply("reset", d, "reset")
        return d

    @property
    def state(self) -> CircuitState:
        return CircuitState(self.store.get_state(self.backend)["state"])

    @property
    def failure_count(self) -> int:
        return int(self.store.get_state(self.backend)["failure_count"])

    def call_with_retry(self, fn: Callable[[], Any], *, max_retries: int | None = None,
                        agent_id: str | None = None) -> Any:
        return drive(self._retry_plan(fn, max_retries, agent_id, self.clock.sleep))


class _AsyncStop:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.task: Any = None

    def set(self) -> None:
        self.event.set()


class AsyncCircuitBreaker(_Core):
    """Asyncio breaker on an async store (``AsyncRedisStore`` / ``AsyncInMemoryStore``)."""

    def __init__(self, backend: str, config: BreakerConfig | None = None, *, store: Any = None, clock: Any = None,
                 rng: Any = None, metrics: Any = None, listeners: Any = ()) -> None:
        from .store import AsyncInMemoryStore

        if store is not None and not getattr(store, "is_async", isinstance(store, AsyncInMemoryStore)):
            if not isinstance(store, AsyncInMemoryStore):
                raise TypeError("AsyncCircuitBreaker needs an async store (AsyncRedisStore, AsyncInMemoryStore)")
        super().__init__(backend, config, store, clock, rng, metrics, listeners)
        if self.store is None:
            self.store = AsyncInMemoryStore(clock=self.clock, probe_lease_seconds=self.config.probe_lease_seconds)
        self._bind_store_events()

    def _start_heartbeat(self, permit: Permit) -> None:
        """One task per held claim, renewing every L/3 until the claim resolves (never blocks the loop)."""
        stop = _AsyncStop()
        permit._hb = stop  # type: ignore[attr-defined]
        lease, hold = self.config.probe_lease_seconds, self.config.probe_max_hold_seconds
        token = permit.probe_token

        async def beat() -> None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            while loop.time() - start < hold:
                try:
                    await asyncio.wait_for(stop.event.wait(), lease / 3)
                    return
                except asyncio.TimeoutError:
                    pass
                try:
                    ok = await self.store.renew_probe(self.backend, token, lease_seconds=lease)
                except StoreError:
                    continue
                if not ok:
                    self._emit("on_store_event", StoreEvent(self.backend, "probe_lost", token or ""))
                    return
        stop.task = asyncio.ensure_future(beat())

    async def acquire(self) -> Permit:
        if not self.config.enabled:
            return Permit(True, None, "closed", None, _breaker=self)
        try:
            cr = await self.store.try_transition_and_claim_probe(self.backend, None, self.config.cooldown_s,
                                                                 lease_seconds=self.config.probe_lease_seconds)
        except StoreError as exc:
            return self._store_error_gate(exc)
        return self._permit_from_claim(cr)

    async def _resolve(self, permit: Permit, kind: str, error_type: str | None = None) -> dict | None:
        plan = self._resolve_plan(permit, kind)
        if plan is None:
            return None
        method, kw = plan
        op_id = self._next_op_id()

        async def run() -> dict | None:
            for attempt in range(2):
                try:
                    d = await getattr(self.store, method)(self.backend, op_id=op_id, **kw)
                    self._transition_from_reply(method, d, error_type or kind, op_id, kw.get("probe_token"))
                    return d
                except StoreError as exc:
                    self._pump_store_events()
                    if attempt == 1:
                        self._record_failed(kind, exc)
            return None
        if kind == "release" and permit.probe_token:
            # shielded from cancellation and bounded: the lease bounds the damage if it fails
            task = asyncio.ensure_future(run())
            try:
                return await asyncio.wait_for(asyncio.shield(task), self.config.probe_release_timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                return None
        return await run()

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        permit = await self.acquire()
        t0 = self.clock.monotonic()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            if self._counted(exc):
                await permit.failure(type(exc).__name__)
            else:
                await permit.release()
            self._request("failure", self.clock.monotonic() - t0)
            raise
        except BaseException:
            await permit.release()
            raise
        await permit.success()
        self._request("success", self.clock.monotonic() - t0)
        return result

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("AsyncCircuitBreaker decorates coroutine functions only")

        @functools.wraps(fn)
        async def wrapper(*a: Any, **k: Any) -> Any:
            return await self.call(fn, *a, **k)
        return wrapper

    async def __aenter__(self) -> Permit:
        p = await self.acquire()
        self._push(p)
        return p

    async def __aexit__(self, et: Any, ev: Any, tb: Any) -> None:
        p = self._pop()
        if p is not None:
            await p.__aexit__(et, ev, tb)

    async def force_open(self, reason: str = "", open_for_seconds: float = 0) -> dict | None:
        if not self.config.enabled:
            return None
        d = await self.store.force_open(self.backend, max(self.config.cooldown_s, open_for_seconds))
        self._transition_from_reply("force_open", d, reason)
        return d

    async def reset(self) -> dict | None:
        if not self.config.enabled:
            return None
        d = await self.store.reset(self.backend)
        self._transition_from_reply("reset", d, "reset")
        return d

    async def get_state(self) -> CircuitState:
        return CircuitState((await self.store.get_state(self.backend))["state"])

    async def call_with_retry(self, factory: Callable[[], Awaitable[Any]], *, max_retries: int | None = None,
                              agent_id: str | None = None) -> Any:
        return await adrive(self._retry_plan(factory, max_retries, agent_id, self.clock.asleep))
