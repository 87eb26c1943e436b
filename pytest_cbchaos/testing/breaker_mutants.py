"""Deliberately broken breaker stores, one per invariant class (public so users can reuse them).

Each mutant reintroduces a defect the invariant suite (docs/invariants.md#breaker-cb) guards against (most of them real
massgen PR #1061 review findings). ``MUTANTS`` maps a name to ``(class, [CB ids that must catch
it])``; ``mutant_target(name)`` gives a conformance ``StoreTarget``. The project's tests assert
every listed check fails on its mutant, so a check that cannot fail is itself caught.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from pytest_cbchaos.breaker import kernel
from pytest_cbchaos.breaker.conformance import StoreTarget
from pytest_cbchaos.breaker.record import DEFAULT, q6
from pytest_cbchaos.breaker.store import InMemoryStore, claim_result, reply


class _Mutant(InMemoryStore):
    pause_hook: Callable[[], Any] | None = None

    def _pause(self) -> None:
        if self.pause_hook is not None:
            self.pause_hook()

    def _two_step(self, backend: str, now: float | None, fn: Callable) -> tuple[kernel.Outcome, float]:
        """Read, pause, then write without re-checking: the non-atomic composition of massgen."""
        t = self._now(now)
        with self._lock:
            rec, _ = self._read(backend, t)
        self._pause()
        o = fn(rec, t)
        if o.applied:
            with self._lock:
                self._write(backend, o.record, t)
        return o, t


class BlindClaimStore(_Mutant):
    """Gate reads then writes its claim blindly: two gates can both win (CB-3)."""

    def try_transition_and_claim_probe(self, backend: str, now: float | None = None, recovery_timeout: Any = None,
                                       *, lease_seconds: float | None = None, op_id: str | None = None) -> Any:
        oid = op_id or self.op_ids()
        o, t = self._two_step(backend, now, lambda r, t: kernel.gate(r, t, oid, self.probe_lease_seconds))
        return claim_result(o, t)


class StateOnlyCasStore(_Mutant):
    """Gate reads, then CASes on ``state`` only: a concurrent force_open is undone (CB-4)."""

    def try_transition_and_claim_probe(self, backend: str, now: float | None = None, recovery_timeout: Any = None,
                                       *, lease_seconds: float | None = None, op_id: str | None = None) -> Any:
        oid = op_id or self.op_ids()
        t = self._now(now)
        with self._lock:
            rec, _ = self._read(backend, t)
        self._pause()
        o = kernel.gate(rec, t, oid, self.probe_lease_seconds)
        with self._lock:
            cur, _ = self._read(backend, t)
            if o.applied and cur.state == rec.state:
                self._write(backend, o.record, t)
        return claim_result(o, t)


class GuardlessSuccessStore(_Mutant):
    """A success closes OPEN (massgen's store-less path; no forced-open guard) (CB-6)."""

    def atomic_record_success(self, backend: str, expected_state: str | None = None, *, op_id: str | None = None,
                              now: float | None = None) -> dict:
        t = self._now(now)
        with self._lock:
            rec, _ = self._read(backend, t)
            new = DEFAULT.replace(probe_generation=rec.probe_generation)
            self._write(backend, new, t)
        return reply(kernel.Outcome(new, rec.state, "closed", True), t)


class BlindForceOpenStore(_Mutant):
    """force_open writes ``open_until = now + D`` unconditionally (CB-8, CB-14, CB-16)."""

    def force_open(self, backend: str, open_for_seconds: float, *, op_id: str | None = None,
                   now: float | None = None) -> dict:
        t = self._now(now)
        with self._lock:
            rec, _ = self._read(backend, t)
            new = kernel.normalize(rec).replace(state="open", open_until=q6(t + open_for_seconds),
                                                half_open_probe_active=False, probe_token="",
                                                probe_lease_until=0.0, probe_anchor=0.0)
            self._write(backend, new, t)
        return reply(kernel.Outcome(new, rec.state, "open", True), t)


class NoExtendStore(_Mutant):
    """A failure while OPEN does not extend the cooldown (CB-9)."""

    def atomic_record_failure(self, backend: str, failure_threshold: int, recovery_timeout: float, *,
                              op_id: str | None = None, now: float | None = None) -> dict:
        t = self._now(now)
        with self._lock:
            rec, _ = self._read(backend, t)
            if rec.state == "open":
                new = rec.replace(failure_count=rec.failure_count + 1)
                self._write(backend, new, t)
                return reply(kernel.Outcome(new, "open", "open", True), t)
        return super().atomic_record_failure(backend, failure_threshold, recovery_timeout, op_id=op_id, now=now)


class BaseTtlStore(_Mutant):
    """Every write uses the base TTL: the probe TTL and the merged-record TTL are ignored (CB-10, CB-12)."""

    def _write(self, backend: str, rec: Any, now: float) -> None:
        from pytest_cbchaos.breaker.record import encode

        self._data[backend] = [encode(rec), rec, (), now + self.ttl]


class MonotonicClockStore(_Mutant):
    """Persists ``time.monotonic()``-based deadlines (CB-1)."""

    def atomic_record_failure(self, backend: str, failure_threshold: int, recovery_timeout: float, *,
                              op_id: str | None = None, now: float | None = None) -> dict:
        mono = time.monotonic()
        return super().atomic_record_failure(backend, failure_threshold, recovery_timeout, op_id=op_id, now=mono)


class ZeroTtlStore(_Mutant):
    """Accepts ``ttl <= 0`` and then expires the key on every write (CB-11, CB-20)."""

    def __init__(self, **kw: Any) -> None:
        ttl = kw.pop("ttl", 3600)
        super().__init__(**kw)
        self.ttl = ttl

    def _write(self, backend: str, rec: Any, now: float) -> None:
        if self.ttl <= 0:
            self._data.pop(backend, None)
            return
        super()._write(backend, rec, now)


class FalseRejectStore(_Mutant):
    """Gate decides on a stale read but returns the fresh record: rejects a CLOSED circuit (CB-15)."""

    def try_transition_and_claim_probe(self, backend: str, now: float | None = None, recovery_timeout: Any = None,
                                       *, lease_seconds: float | None = None, op_id: str | None = None) -> Any:
        oid = op_id or self.op_ids()
        t = self._now(now)
        with self._lock:
            stale, _ = self._read(backend, t)
        self._pause()
        o = kernel.gate(stale, t, oid, self.probe_lease_seconds)
        with self._lock:
            cur, _ = self._read(backend, t)
            if o.applied:
                self._write(backend, o.record, t)
                cur = o.record
        res = claim_result(o, t)
        res.record.update(kernel.normalize(cur).to_dict())
        return res


class UnfencedReleaseStore(_Mutant):
    """Probe release and renew ignore the token (CB-17)."""

    def _current(self, backend: str) -> str:
        with self._lock:
            rec, _ = self._read(backend, self.clock.time())
        return kernel.normalize(rec).probe_token

    def release_probe(self, backend: str, probe_token: str, outcome: str, **kw: Any) -> dict:
        return super().release_probe(backend, self._current(backend) or probe_token, outcome, **kw)

    def renew_probe(self, backend: str, probe_token: str, **kw: Any) -> bool:
        cur = self._current(backend)
        return super().renew_probe(backend, cur or probe_token, **kw) if cur else False


class AnySuccessClosesStore(_Mutant):
    """Any success closes HALF_OPEN (massgen's rule, strict ownership off) (CB-18)."""

    def __init__(self, **kw: Any) -> None:
        kw["strict_probe_ownership"] = False
        super().__init__(**kw)


class LaxBoolStore(_Mutant):
    """Parses the probe flag case-insensitively and accepts ``1`` (massgen's Lua/Python split) (CB-21)."""

    def _read(self, backend: str, now: float) -> Any:
        ent = self._live(backend, now)
        if ent is not None and ent[1] is None:
            raw = ent[0].get("half_open_probe_active")
            if isinstance(raw, str) and raw.strip().lower() in ("true", "1"):
                ent[0]["half_open_probe_active"] = "True"
        return super()._read(backend, now)


class RaiseOnCorruptStore(_Mutant):
    """Raises on a corrupt stored number instead of repairing it (CB-22)."""

    def _read(self, backend: str, now: float) -> Any:
        rec, corrupt = super()._read(backend, now)
        if corrupt:
            raise ValueError(f"corrupt fields {corrupt}")
        return rec, corrupt


class NonAtomicResetStore(_Mutant):
    """reset is get + set: a trip between them is reported as the wrong previous state (CB-25)."""

    def reset(self, backend: str, *, op_id: str | None = None, now: float | None = None) -> dict:
        prev = self.get_state(backend)["state"]
        self._pause()
        t = self._now(now)
        with self._lock:
            rec, _ = self._read(backend, t)
            new = DEFAULT.replace(probe_generation=rec.probe_generation)
            self._write(backend, new, t)
        return reply(kernel.Outcome(new, prev, "closed", True), t)


class SharedNamespaceStore(_Mutant):
    """Ignores ``key_prefix``: every instance shares one keyspace (CB-2)."""

    _shared: dict = {}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._data = SharedNamespaceStore._shared


MUTANTS: dict[str, tuple[type, list[int]]] = {
    "blind_claim": (BlindClaimStore, [3]),
    "state_only_cas": (StateOnlyCasStore, [4]),
    "guardless_success": (GuardlessSuccessStore, [6]),
    "blind_force_open": (BlindForceOpenStore, [8, 14, 16]),
    "no_extend": (NoExtendStore, [9]),
    "base_ttl": (BaseTtlStore, [10, 12]),
    "monotonic_clock": (MonotonicClockStore, [1]),
    "zero_ttl": (ZeroTtlStore, [11, 20]),
    "false_reject": (FalseRejectStore, [15]),
    "unfenced_release": (UnfencedReleaseStore, [17]),
    "any_success_closes": (AnySuccessClosesStore, [18]),
    "lax_bool": (LaxBoolStore, [21]),
    "raise_on_corrupt": (RaiseOnCorruptStore, [22]),
    "non_atomic_reset": (NonAtomicResetStore, [25]),
    "shared_namespace": (SharedNamespaceStore, [2]),
}


def mutant_target(name: str) -> StoreTarget:
    cls, _ = MUTANTS[name]
    if cls is SharedNamespaceStore:
        SharedNamespaceStore._shared.clear()

    def make(**kw: Any) -> Any:
        kw.pop("key_prefix", None)
        return cls(**kw)
    return StoreTarget(f"mutant:{name}", make, raw_set=lambda s, b, f: s.raw_set(b, f),
                       ttl_of=lambda s, b: s.ttl_of(b), third_party=True)


# ---- Redis-path and breaker mutants (live-server checks: tests/breaker/test_live_*.py) --------------------------
# They need a live client, so they are not conformance ``StoreTarget``s; ``REDIS_MUTANTS`` maps a name to
# (class, the docs/breaker-design.md items whose tests must catch it).

from pytest_cbchaos.breaker.breaker import CircuitBreaker  # noqa: E402
from pytest_cbchaos.breaker.errors import StoreContentionError, StoreError  # noqa: E402
from pytest_cbchaos.breaker.redis_store import RedisStore, _ScriptingUnavailable  # noqa: E402


class SilentFallbackRedisStore(RedisStore):
    """Switches to the WATCH fallback without the ``scripting_fallback`` event (docs/breaker-design.md#error-classes,
    docs/breaker-design.md#events-listeners-and-metrics)."""

    def _mark_fallback(self) -> None:
        if not self.using_fallback:
            self.using_fallback = True
            self._fallback_since = self.clock.monotonic()


class FallbackOnAnyErrorRedisStore(RedisStore):
    """Treats every script error as "scripting unavailable": READONLY/NOPERM/BUSY go to the fallback (CB-23)."""

    def _io(self, op: str, backend: str, fn: Callable[[], Any], reads: bool = False) -> Any:
        try:
            return super()._io(op, backend, fn, reads)
        except StoreError as exc:
            if self.using_fallback or reads or isinstance(exc, StoreContentionError):
                raise
            raise _ScriptingUnavailable(str(exc)) from exc


class FlatErrorsRedisStore(RedisStore):
    """No error classes: every server error is a bare ``StoreError`` (massgen's handling,
    docs/breaker-design.md#error-classes)."""

    def _io(self, op: str, backend: str, fn: Callable[[], Any], reads: bool = False) -> Any:
        try:
            return super()._io(op, backend, fn, reads)
        except StoreError as exc:
            if type(exc) is StoreError:
                raise
            raise StoreError(str(exc)) from exc


class GenerationOnlyTokenRedisStore(RedisStore):
    """Fences probe resolution by the token's generation only: after the record is lost and re-claimed
    (generations start again), a stale owner resolves the new probe (docs/breaker-design.md#record-loss, CB-17)."""

    def _same_gen(self, backend: str, token: str) -> str:
        cur = self.get_state(backend)["probe_token"]
        return cur if cur and cur.split(":", 1)[0] == token.split(":", 1)[0] else token

    def release_probe(self, backend: str, probe_token: str, outcome: str, **kw: Any) -> Any:
        return super().release_probe(backend, self._same_gen(backend, probe_token), outcome, **kw)

    def renew_probe(self, backend: str, probe_token: str, **kw: Any) -> Any:
        return super().renew_probe(backend, self._same_gen(backend, probe_token), **kw)


class AnchorlessFencingRedisStore(RedisStore):
    """Binds a token to its record but not to the OPEN cycle (no rule N anchor): a stale token left in the
    hash by an earlier cycle passes for a later massgen claim (docs/breaker-design.md#massgen-compatibility,
    docs/breaker-design.md#mixed-fleet)."""

    def _revive(self, backend: str, token: str) -> None:
        raw = {k.decode(): v.decode() for k, v in self.client.hgetall(self.key(backend)).items()}
        if raw.get("probe_token") == token and raw.get("half_open_probe_active") == "True":
            self.client.hset(self.key(backend), "probe_anchor", raw.get("open_until", "0.0"))

    def release_probe(self, backend: str, probe_token: str, outcome: str, **kw: Any) -> Any:
        self._revive(backend, probe_token)
        return super().release_probe(backend, probe_token, outcome, **kw)


class LegacyClaimIsFreeRedisStore(RedisStore):
    """Treats a tokenless (massgen) claim as a free slot instead of leasing it first
    (docs/breaker-design.md#massgen-compatibility item 3)."""

    def try_transition_and_claim_probe(self, backend: str, now: float | None = None, *a: Any, **kw: Any) -> Any:
        st = self.get_state(backend)
        if st["state"] == "half_open" and st["half_open_probe_active"] and not st["probe_token"]:
            self.client.hset(self.key(backend), "half_open_probe_active", "False")
        return super().try_transition_and_claim_probe(backend, now, *a, **kw)


class WorkerClockGateRedisStore(RedisStore):
    """Writes deadlines in server time but gates on the worker's clock: one decision mixes clocks (CB-26)."""

    def try_transition_and_claim_probe(self, backend: str, now: float | None = None, *a: Any, **kw: Any) -> Any:
        saved, self.time_source = self.time_source, "client"
        try:
            return super().try_transition_and_claim_probe(backend, now, *a, **kw)
        finally:
            self.time_source = saved


class BlockingAsyncStore:
    """An "async" store doing synchronous Redis I/O inside its coroutines (massgen's sync store in
    ``async call_with_retry``): every op blocks the event loop for a full round trip (CB-27)."""

    is_async = True

    def __init__(self, sync_store: Any) -> None:
        self._sync = sync_store

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._sync, name)
        if not callable(fn):
            return fn

        async def blocking(*a: Any, **k: Any) -> Any:
            return fn(*a, **k)  # the defect: a blocking call on the loop
        return blocking


class NoLossEventsBreaker(CircuitBreaker):
    """Never notices a lost record: no ``record_missing`` event (docs/breaker-design.md#record-loss)."""

    def _note_record(self, d: dict, token: str | None = None) -> None:
        return None


REDIS_MUTANTS: dict[str, tuple[type, list[str]]] = {
    "silent_fallback": (SilentFallbackRedisStore, [
        "docs/breaker-design.md#scripting-modes-and-error-classes renamed scripting",
        "docs/breaker-design.md#events-listeners-and-metrics"]),
    "fallback_on_any_error": (FallbackOnAnyErrorRedisStore, [
        "docs/breaker-design.md#scripting-modes-and-error-classes READONLY",
        "docs/breaker-design.md#scripting-modes-and-error-classes NOPERM",
        "CB-23"]),
    "flat_errors": (FlatErrorsRedisStore, [
        "docs/breaker-design.md#scripting-modes-and-error-classes READONLY",
        "docs/breaker-design.md#scripting-modes-and-error-classes NOPERM",
        "docs/breaker-design.md#scripting-modes-and-error-classes BUSY",
        "docs/breaker-design.md#error-classes"]),
    "generation_only_token": (GenerationOnlyTokenRedisStore, ["docs/breaker-design.md#record-loss", "CB-17"]),
    "anchorless_fencing": (AnchorlessFencingRedisStore, ["docs/breaker-design.md#mixed-fleet rule N"]),
    "legacy_claim_is_free": (LegacyClaimIsFreeRedisStore, ["docs/breaker-design.md#mixed-fleet legacy claim"]),
    "worker_clock_gate": (WorkerClockGateRedisStore, ["CB-26", "docs/breaker-design.md#clock-skew"]),
    "blocking_async": (BlockingAsyncStore, ["CB-27"]),
    "no_loss_events": (NoLossEventsBreaker, ["docs/breaker-design.md#record-loss record_missing"]),
}


# ---- mutants of exactly-once resends (docs/breaker-design.md#indeterminate-outcomes) and rate limits -------------
# (docs/breaker-design.md#codec-and-corrupt-fields, docs/breaker-design.md#events-listeners-and-metrics)

import uuid as _uuid  # noqa: E402

from pytest_cbchaos.breaker.errors import StoreUnavailableError  # noqa: E402
from pytest_cbchaos.breaker.ratelimit import EventRateLimiter  # noqa: E402


class FreshOpIdResendRedisStore(RedisStore):
    """Resends an op whose reply was lost under a *new* op id (a retry wrapper that ignores the store's
    op ids): the server cannot recognise the resend, so an applied-but-reply-lost op applies twice and the
    reply the caller sees is the second one's (docs/breaker-design.md#one-round-trip-per-decision exactly-once,
    docs/breaker-design.md#faults-inside-one-op, docs/breaker-design.md#indeterminate-outcomes)."""

    def _run(self, op: str, backend: str, op_id: str, now: float | None, args: list[Any],
             post: Callable[[dict, dict], Any]) -> Any:
        resends, self.io_resends = self.io_resends, 0
        try:
            for attempt in range(resends + 1):
                try:
                    return super()._run(op, backend, op_id if attempt == 0 else _uuid.uuid4().hex, now, args, post)
                except StoreUnavailableError:
                    if attempt == resends:
                        raise
        finally:
            self.io_resends = resends
        raise AssertionError("unreachable")  # pragma: no cover


class _UnlimitedRateLimiter(EventRateLimiter):
    def admit(self, key: Any) -> int | None:
        return 0


class NoRateLimitBreaker(CircuitBreaker):
    """Emits every ``corrupt_field`` event and logs every listener failure: no rate limit
    (docs/breaker-design.md#codec-and-corrupt-fields, docs/breaker-design.md#events-listeners-and-metrics)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._corrupt_limiter = _UnlimitedRateLimiter(0, self.clock)
        self._listener_log_limiter = _UnlimitedRateLimiter(0, self.clock)


REDIS_MUTANTS["fresh_op_id_resend"] = (FreshOpIdResendRedisStore, [
    "docs/breaker-design.md#faults-inside-one-op",
    "docs/breaker-design.md#indeterminate-outcomes",
    "docs/breaker-design.md#one-round-trip-per-decision exactly-once"])
# Breaker mutants checked without a live server (tests/breaker/test_corrupt_rate.py).
BREAKER_MUTANTS: dict[str, tuple[type, list[str]]] = {
    "no_rate_limit": (NoRateLimitBreaker, [
        "docs/breaker-design.md#codec-and-corrupt-fields corrupt_field rate limit",
        "docs/breaker-design.md#events-listeners-and-metrics listener log rate limit"]),
}


class NoResendRedisStore(RedisStore):
    """Gives up after the first network error: ``StoreIndeterminateError`` before any resend
    (docs/breaker-design.md#one-round-trip-per-decision, docs/breaker-design.md#indeterminate-outcomes)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.io_resends = 0


REDIS_MUTANTS["no_resend"] = (NoResendRedisStore, [
    "docs/breaker-design.md#indeterminate-outcomes indeterminate only after all resends",
    "docs/breaker-design.md#one-round-trip-per-decision"])


# ---- detection-power mutants (docs/mutants.md#breaker-testsbreaker): each caught on every run by the check named ----------------

import hashlib as _hashlib  # noqa: E402

from pytest_cbchaos.breaker.redis_store import _SCRIPTS, AsyncRedisStore  # noqa: E402


def _keep_count(o: kernel.Outcome, rec: Any, outcome: str) -> kernel.Outcome:
    if not (o.applied and outcome == "success"):
        return o
    kept = o.record.replace(failure_count=kernel.normalize(rec).failure_count)
    return kernel.Outcome(kept, o.prev_state, o.new_state, True)


class KeepCountReleaseStore(InMemoryStore):
    """The owner's ``release_probe(success)`` closes but keeps the failure count: one later failure
    re-opens (kernel path; caught by the cell walk's ``release_probe:owner-success``)."""

    def release_probe(self, backend: str, probe_token: str, outcome: str, *, recovery_timeout: float,
                      op_id: str | None = None, now: float | None = None) -> dict[str, Any]:
        oid = op_id or self.op_ids()
        o, t, c = self._run(backend, now, lambda r, t: _keep_count(
            kernel.release_probe(r, t, oid, probe_token, outcome, recovery_timeout), r, outcome))
        return self._reply(o, t, c)


def _script(op: str, old: str, new: str) -> tuple[str, str]:
    text = _SCRIPTS[op][0]
    assert old in text, f"{op}.lua no longer contains {old!r}: update the mutant"
    text = text.replace(old, new)
    return text, _hashlib.sha1(text.encode()).hexdigest()


class KeepCountReleaseLuaStore(RedisStore):
    """``release_probe.lua`` with the same defect as :class:`KeepCountReleaseStore` (Lua path)."""

    scripts = {**_SCRIPTS, "release_probe": _script(
        "release_probe", "R.state = 'closed'; R.failure_count = 0", "R.state = 'closed'")}


class _WorkerClockFallback:
    def _watch_plan(self, op: str, backend: str, key: str, kfn: Callable, cnow: float | None,
                    sleep: Callable[[float], Any]) -> Any:
        return super()._watch_plan(op, backend, key, kfn,  # type: ignore[misc]
                                   self.clock.time() if cnow is None else cnow, sleep)  # type: ignore[attr-defined]


class WorkerClockFallbackRedisStore(_WorkerClockFallback, RedisStore):
    """The WATCH fallback takes ``now`` from the worker's clock although ``time_source="server"``:
    deadlines already past (or far ahead) by server time (CB-26, server-time check)."""


class WorkerClockFallbackAsyncRedisStore(_WorkerClockFallback, AsyncRedisStore):
    """:class:`WorkerClockFallbackRedisStore` on the async store."""


REDIS_MUTANTS["keep_count_release_lua"] = (KeepCountReleaseLuaStore, ["docs/breaker-design.md#transition-cells P1"])
REDIS_MUTANTS["worker_clock_fallback"] = (WorkerClockFallbackRedisStore, ["CB-26 server time, fallback"])
REDIS_MUTANTS["worker_clock_fallback_async"] = (WorkerClockFallbackAsyncRedisStore,
                                                ["CB-26 server time, async fallback"])


class UnlockedKernelStore(InMemoryStore):
    """Runs the kernel outside the lock (read under it, decide, write under it): concurrent ops lose
    updates (CB-4, CB-25, the lost-update check). Its ``pause_hook`` sits in the unlocked gap."""

    def _run_at(self, backend: str, t: float, fn: Any) -> tuple[kernel.Outcome, float, tuple[str, ...]]:
        with self._lock:
            rec, corrupt = self._read(backend, t)
        o = fn(rec, t)
        if self._pause_hook is not None:
            self._pause_hook()
        if o.applied:
            with self._lock:
                self._write(backend, o.record, t)
        return o, t, corrupt


MUTANTS["unlocked_kernel"] = (UnlockedKernelStore, [4, 16, 25])


from pytest_cbchaos.breaker.breaker import Permit  # noqa: E402


class SecondHalfOpenCallerBreaker(CircuitBreaker):
    """Admits a caller the store rejected in HALF_OPEN ("not OPEN, so allowed"): a busy probe lets
    every other caller through (docs/breaker-design.md#half-open-admission)."""

    def _permit_from_claim(self, cr: Any) -> Permit:
        if not cr.won and cr.record.get("_prev_state") == "half_open":
            return Permit(True, None, "half_open", None, _breaker=self)
        return super()._permit_from_claim(cr)


BREAKER_MUTANTS["second_half_open_caller"] = (SecondHalfOpenCallerBreaker, [
    "docs/breaker-design.md#half-open-admission"])


class _OtherKeyWatch:
    """A pipeline that WATCHes ``<key>:other`` instead of the key it reads and writes."""

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe

    def watch(self, *keys: Any) -> Any:
        return self._pipe.watch(*(f"{k.decode() if isinstance(k, bytes) else k}:other" for k in keys))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)


class _OtherKeyWatchClient:
    def __init__(self, client: Any) -> None:
        self._client = client

    def pipeline(self, *a: Any, **kw: Any) -> _OtherKeyWatch:
        return _OtherKeyWatch(self._client.pipeline(*a, **kw))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class UnwatchedFallbackRedisStore(RedisStore):
    """The WATCH fallback watches the wrong key: a write landing between its read and its EXEC is
    overwritten (CB-4, CB-16, CB-25 with the fallback's ``pause_hook``; docs/breaker-design.md#forced-interleavings)."""

    def __init__(self, client: Any, *a: Any, **kw: Any) -> None:
        super().__init__(_OtherKeyWatchClient(client), *a, **kw)


REDIS_MUTANTS["unwatched_fallback"] = (UnwatchedFallbackRedisStore, ["CB-4", "CB-16", "CB-25"])
