"""Store protocols, ``ClaimResult``, argument validation, ``InMemoryStore`` and ``make_store``
(docs/breaker-design.md#store-protocol).

``InMemoryStore`` keeps *encoded* records (the shared codec, so corrupt-value tests can inject
raw strings with :meth:`InMemoryStore.raw_set`) behind one ``threading.Lock`` and calls
:mod:`.kernel` for every op that may change the record. A decoded copy is cached next to each
encoded record so reads do no decoding.

Fast path (closed gate, no-op success): the kernel provably returns "no change" for a gate on a
CLOSED record and for ``record_success`` on a CLOSED record with ``failure_count == 0`` (expected
state absent or ``"closed"``), unless the op id is already in ``recent_ops`` (a duplicate). For
those inputs the reply is a copy of a template precomputed from the kernel's own ``_noop`` reply
(:func:`_fast_view`), read without the lock: entries are immutable once stored (replaced by one
dict store under the lock), so the read is a single linearisation point; a gate's admission is an
``_Admitted``, which builds that reply only when read. ``tests/breaker/test_fast_path.py`` holds fast
path == kernel for arbitrary records. Every other case goes through the kernel under the lock. Only
exact ``InMemoryStore`` instances use it (subclasses that override internals, e.g. the mutants, keep
the plain path). ``HotOps`` (``hot_gate`` / ``hot_success``) are the same two ops for
``CircuitBreaker.call``, answering a no-op with the view itself (docs/breaker-design.md#hot-path).
"""

from __future__ import annotations

import itertools
import math
import os
import weakref
import threading
import uuid
from time import time as _wall_time
from typing import Any, Mapping, NamedTuple, Protocol, runtime_checkable

from . import kernel
from .record import DEFAULT, MASSGEN_FIELDS, STATES, Record, decode, encode, valid_op_id, valid_token

_DEFAULT_TTL = 3600
_tuple_new = tuple.__new__
_raw_item = tuple.__getitem__  # a tuple's storage, past a subclass's __getitem__


class ClaimResult(NamedTuple):
    """Gate reply; unpacks like massgen's ``(won, record, label)``."""

    won: bool
    record: dict[str, Any]
    label: str

    @property
    def token(self) -> str | None:
        return self.record.get("probe_token") if self.won else None

    @property
    def admitted(self) -> bool:
        return self.won or self.record.get("_prev_state") == "closed"

    @property
    def retry_after(self) -> float | None:
        now = self.record.get("_now") or 0.0
        st = self.record.get("state")
        if self.admitted:
            return None
        if st == "open":
            return max(0.0, self.record.get("open_until", 0.0) - now)
        if st == "half_open" and self.record.get("probe_lease_until"):
            return max(0.0, self.record["probe_lease_until"] - now)
        return None


class _TupleNew(tuple):
    """Put first among a tuple subclass's bases, makes ``cls(iterable)`` CPython's own tuple
    constructor, skipping a NamedTuple's Python ``__new__`` (the subclass's instances are built per op)."""

    __slots__ = ()
    __new__ = tuple.__new__


class _Admitted(_TupleNew, ClaimResult):
    """A gate's no-op admission in CLOSED (G1, not won), answered without building its reply
    (docs/breaker-design.md#hot-path): the tuple stores ``(view, now, box)`` and stands for
    ``ClaimResult(False, noop_reply(view, now), "")``, built on first use and kept in ``box`` (so
    ``record`` is one dict). In Python it is that 3-tuple: iteration, unpacking, indexing, ``in``,
    comparisons, ``hash``, ``repr``, ``+``/``*``, copy and pickle (which give a plain ``ClaimResult``).
    C code that reads tuple storage directly (the ``json`` module, ``%`` formatting) needs
    ``tuple(claim)``. Built as ``_Admitted((view, now, []))``."""

    __slots__ = ()
    won = False
    label = ""
    admitted = True
    token = None
    retry_after = None

    def _claim(self) -> ClaimResult:
        box = _raw_item(self, 2)
        if not box:  # two threads may both build one; both answer the first appended
            box.append(ClaimResult(False, InMemoryStore.noop_reply(_raw_item(self, 0), _raw_item(self, 1)), ""))
        return box[0]

    @property
    def record(self) -> dict[str, Any]:  # type: ignore[override]
        return self._claim()[1]

    @classmethod
    def _make(cls, iterable: Any) -> ClaimResult:
        """``_replace`` builds a plain ``ClaimResult``: a changed copy need not be a no-op admission."""
        return _tuple_new(ClaimResult, iterable)

    def __reduce__(self) -> tuple[Any, ...]:
        return ClaimResult, tuple(self._claim())

    def __iter__(self) -> Any:
        return iter(self._claim())

    def __getitem__(self, i: Any) -> Any:
        return self._claim()[i]

    def __contains__(self, x: object) -> bool:
        return x in self._claim()

    def __hash__(self) -> int:
        return hash(self._claim())

    def __repr__(self) -> str:
        return repr(self._claim())

    def __eq__(self, o: object) -> bool:
        return self._claim() == o

    def __ne__(self, o: object) -> bool:
        return self._claim() != o

    def __lt__(self, o: Any) -> bool:
        return self._claim() < o

    def __le__(self, o: Any) -> bool:
        return self._claim() <= o

    def __gt__(self, o: Any) -> bool:
        return self._claim() > o

    def __ge__(self, o: Any) -> bool:
        return self._claim() >= o

    def __add__(self, o: Any) -> Any:
        return self._claim() + o

    def __radd__(self, o: Any) -> Any:
        return o + tuple(self._claim())

    def __mul__(self, n: Any) -> Any:
        return self._claim() * n

    __rmul__ = __mul__

    def count(self, x: Any) -> int:
        return self._claim().count(x)

    def index(self, x: Any, *a: Any) -> int:
        return self._claim().index(x, *a)


@runtime_checkable
class CircuitBreakerStore(Protocol):
    def get_state(self, backend: str) -> dict[str, Any]: ...
    def set_state(self, backend: str, state: Mapping[str, Any]) -> None: ...
    def cas_state(self, backend: str, expected_state: str, updates: Mapping[str, Any], *,
                  expected_fields: Mapping[str, Any] | None = None) -> bool: ...
    def increment_failure(self, backend: str) -> int: ...
    def atomic_record_failure(self, backend: str, failure_threshold: int, recovery_timeout: float,
                              **kw: Any) -> dict[str, Any]: ...
    def atomic_record_success(self, backend: str, expected_state: str | None = None,
                              **kw: Any) -> dict[str, Any]: ...
    def try_transition_and_claim_probe(self, backend: str, now: float | None, recovery_timeout: float,
                                       **kw: Any) -> ClaimResult: ...
    def renew_probe(self, backend: str, probe_token: str, **kw: Any) -> bool: ...
    def release_probe(self, backend: str, probe_token: str, outcome: str, **kw: Any) -> dict[str, Any]: ...
    def force_open(self, backend: str, open_for_seconds: float, **kw: Any) -> dict[str, Any]: ...
    def reset(self, backend: str, **kw: Any) -> dict[str, Any]: ...
    def clear(self, backend: str) -> None: ...


@runtime_checkable
class AsyncCircuitBreakerStore(Protocol):
    async def get_state(self, backend: str) -> dict[str, Any]: ...
    async def atomic_record_failure(self, backend: str, failure_threshold: int, recovery_timeout: float,
                                    **kw: Any) -> dict[str, Any]: ...
    async def atomic_record_success(self, backend: str, expected_state: str | None = None,
                                    **kw: Any) -> dict[str, Any]: ...
    async def try_transition_and_claim_probe(self, backend: str, now: float | None, recovery_timeout: float,
                                             **kw: Any) -> ClaimResult: ...
    async def renew_probe(self, backend: str, probe_token: str, **kw: Any) -> bool: ...
    async def release_probe(self, backend: str, probe_token: str, outcome: str, **kw: Any) -> dict[str, Any]: ...
    async def force_open(self, backend: str, open_for_seconds: float, **kw: Any) -> dict[str, Any]: ...
    async def reset(self, backend: str, **kw: Any) -> dict[str, Any]: ...
    async def clear(self, backend: str) -> None: ...


# ---- validation (before any I/O) -------------------------------------------------------------

def _finite(name: str, v: Any, *, positive: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
            or (positive and v == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
    return float(v)


def check_threshold(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"failure_threshold must be an int >= 1, got {v!r}")
    return v


def check_recovery(v: Any) -> float:
    return _finite("recovery_timeout", v, positive=True)


def check_lease(v: Any) -> float:
    return _finite("lease_seconds", v, positive=True)


def check_open_for(v: Any) -> float:
    return _finite("open_for_seconds", v, positive=False)


def check_ttl(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be an int >= 1 (a zero TTL would delete the key on every write), got {v!r}")
    return v


def check_token(v: Any) -> str:
    if not valid_token(v):
        raise ValueError(f"probe_token must match '<generation>:<32 lowercase hex>', got {v!r}")
    return v


def check_outcome(v: Any) -> str:
    if v not in kernel.OUTCOMES:
        raise ValueError(f"outcome must be one of {kernel.OUTCOMES}, got {v!r}")
    return v


def check_backend(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"backend must be a str, got {v!r}")
    return v


def check_now(v: Any) -> float | None:
    if v is None:
        return None
    return _finite("now", v, positive=False)


def check_updates(updates: Mapping[str, Any], *, allow_all_massgen: bool = True) -> dict[str, Any]:
    """Validate massgen-field updates for ``set_state``/``cas_state``; returns decoded values."""
    if not isinstance(updates, Mapping):
        raise ValueError(f"updates must be a mapping of massgen fields, got {updates!r}")
    out: dict[str, Any] = {}
    for k, v in updates.items():
        if k not in MASSGEN_FIELDS:
            raise ValueError(f"field {k!r} is not settable; expected one of {MASSGEN_FIELDS}")
        if k == "state":
            if v not in STATES:
                raise ValueError(f"state must be one of {STATES}, got {v!r}")
        elif k == "failure_count":
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 2**31 - 1:
                raise ValueError(f"failure_count must be an int in 0..2^31-1, got {v!r}")
        elif k == "half_open_probe_active":
            if v not in (True, False, "True", "False"):
                raise ValueError(f"half_open_probe_active must be a bool, got {v!r}")
            v = v in (True, "True")
        else:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1e11:
                raise ValueError(f"{k} must be a finite number in 0..1e11, got {v!r}")
            v = float("%.6f" % v)
        out[k] = v
    return out


_MASK64 = 0xFFFFFFFFFFFFFFFF


class OpIds:
    """Cheap unique 32-hex op ids: a random 16-hex prefix per instance plus a counter.

    A hot path (docs/breaker-design.md#hot-path) takes ``n = next(ids.counter)`` and calls ``format(n)``
    only when it needs the string: the counter is consumed either way, so the id sequence stays the
    same. ``format`` takes ``n`` modulo 2^64 (16 hex digits); a raw counter can differ from its id's
    only after 2^64 ids.
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)
        _LIVE_OP_IDS.add(self)

    def renew_prefix(self) -> None:
        """A forked child must not repeat its parent's ids (they would read as duplicates)."""
        self._prefix = os.urandom(8).hex()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self.counter) & _MASK64:016x}"

    def format(self, n: int) -> str:
        return f"{self._prefix}{n & _MASK64:016x}"

    def own_counters(self, op_ids: Any) -> frozenset[int]:
        """Counters of the ids in ``op_ids`` that this generator could produce."""
        p = self._prefix
        return frozenset(int(o[16:], 16) for o in op_ids if o.startswith(p))


_LIVE_OP_IDS: "weakref.WeakSet[OpIds]" = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [ids.renew_prefix() for ids in list(_LIVE_OP_IDS)])


def resolve_op_id(op_id: str | None, ids: OpIds) -> str:
    if op_id is None:
        return ids()
    if not valid_op_id(op_id):
        raise ValueError(f"op_id must be 32 lowercase hex, got {op_id!r}")
    return op_id


def reply(o: kernel.Outcome, now: float, corrupt: tuple[str, ...] = ()) -> dict[str, Any]:
    d = o.record.to_dict()
    d.update(o.meta(now, corrupt))
    return d


def claim_result(o: kernel.Outcome, now: float, corrupt: tuple[str, ...] = ()) -> ClaimResult:
    return ClaimResult(o.won, reply(o, now, corrupt), o.label if o.won else "")


# ---- in-memory store --------------------------------------------------------------------------

# fast view of one decoded entry: (gate_noop, success_noop, reply template, corrupt, op ids, own counters);
# opaque outside this module (a hot op's caller only compares it by identity and passes it back)
FastView = tuple[bool, bool, dict[str, Any], tuple[str, ...], frozenset[str], frozenset[int]]
NoOp = tuple[FastView, float]  # a hot op's no-op answer: (view, now), an exact 2-tuple


class HotOps(Protocol):
    """The store ops ``CircuitBreaker.call`` runs on its hot path (docs/breaker-design.md#hot-path).

    Optional: a store offers them by answering ``hot_ops()`` with such an object (``InMemoryStore``:
    itself; ``RedisStore``: a ``redis_hot.RedisHotOps``); a store without ``hot_ops``, or answering None, gets the general path. ``n`` is a counter
    of ``op_ids`` (``next(op_ids.counter)``) naming the op's id ``op_ids.format(n)``. Each op is the
    protocol's op with that id, except that a no-op (nothing to write, report or claim) answers
    ``(view, now)``; ``noop_reply(view, now)`` is the reply it stands for, and the same view means
    the same reply but for ``_now``. It may leave out the record's ``recent_ops`` entries (``RedisHotOps``: no
    ``recent_ops`` key, ``_recent_ops_omitted`` = their count; ``get_state`` reads them)."""

    op_ids: OpIds

    def hot_gate(self, backend: str, n: int, lease_seconds: float) -> NoOp | ClaimResult: ...
    def hot_success(self, backend: str, n: int) -> NoOp | dict[str, Any]: ...
    def noop_reply(self, view: FastView, now: float) -> dict[str, Any]: ...


def _fast_view(rec: Record, corrupt: tuple[str, ...], ids: OpIds) -> FastView:
    """Precompute the reply of the kernel's no-change outcome for ``rec`` (closed gate / closed
    zero-failure success). The template is built by the same ``reply`` code path from the kernel's
    own ``Outcome``, so its keys and values are the kernel's; only ``_now`` and ``_corrupt`` vary."""
    nrec = kernel.normalize(rec)
    closed = nrec.state == "closed"
    tmpl = reply(kernel.Outcome(nrec, nrec.state, nrec.state, False), 0.0, corrupt) if closed else {}
    ops = frozenset(o for o, _, _ in nrec.recent_ops)
    return (closed, closed and nrec.failure_count == 0, tmpl, corrupt, ops, ids.own_counters(ops))


class _WatchedLock:
    """A lock that counts the threads blocked on it (for :meth:`InMemoryStore.lock_waiters`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meta = threading.Lock()
        self.waiting = 0

    def __enter__(self) -> "_WatchedLock":
        if not self._lock.acquire(blocking=False):
            with self._meta:
                self.waiting += 1
            self._lock.acquire()
            with self._meta:
                self.waiting -= 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()


class InMemoryStore:
    """Thread-safe single-process store on :mod:`.kernel`; TTL emulated with the clock.

    ``pause_hook`` (docs/breaker-design.md#forced-interleavings): when set, called between the read
    and the write of every kernel op *while holding the lock*, with :meth:`lock_waiters` telling the
    hook how many threads are blocked behind it; the conformance checks force their interleavings
    with it. Setting it swaps in a counting lock (before the threads start)."""

    def __init__(self, *, clock: Any = None, ttl: int = _DEFAULT_TTL, half_open_probe_ttl: int | None = None,
                 probe_lease_seconds: float = 30.0, strict_probe_ownership: bool = True) -> None:
        from pytest_cbchaos.faults.clock import SYSTEM_CLOCK

        self.ttl = check_ttl("ttl", ttl)
        self.half_open_probe_ttl = None if half_open_probe_ttl is None else check_ttl(
            "half_open_probe_ttl", half_open_probe_ttl)
        self.probe_ttl = max(self.ttl, self.half_open_probe_ttl or self.ttl)
        self.probe_lease_seconds = check_lease(probe_lease_seconds)
        self.strict_probe_ownership = bool(strict_probe_ownership)
        self.clock = clock or SYSTEM_CLOCK
        self._lock: Any = threading.Lock()
        self._pause_hook: Any = None
        self._in_hook = False
        # backend -> [encoded dict, decoded Record | None, corrupt names, expires_at, fast view | None]
        self._data: dict[str, list[Any]] = {}
        self.op_ids = OpIds()  # the ids of ops given none (docs/breaker-design.md#hot-path)
        self._counter = self.op_ids.counter  # the fast paths' one attribute load
        self._dict_cache: tuple[Record, dict[str, Any]] | None = None
        # subclasses may override _read/_write/_data layout (mutants do): they keep the kernel path only
        self._fast = type(self) is InMemoryStore
        self._default_view = _fast_view(DEFAULT, (), self.op_ids)

    @property
    def pause_hook(self) -> Any:
        return self._pause_hook

    @pause_hook.setter
    def pause_hook(self, hook: Any) -> None:
        if hook is not None and not isinstance(self._lock, _WatchedLock):
            self._lock = _WatchedLock()
        self._pause_hook = hook

    def lock_waiters(self) -> int:
        """Threads blocked on the lock while a ``pause_hook`` holds it (0 outside a hook)."""
        return self._lock.waiting if self._in_hook and isinstance(self._lock, _WatchedLock) else 0

    @property
    def clock(self) -> Any:
        return self._clock

    @clock.setter
    def clock(self, clock: Any) -> None:
        from pytest_cbchaos.faults.clock import SystemClock

        self._clock = clock
        # the fast path calls this directly: ``time.time`` itself for the real clock (one call less)
        self._time = _wall_time if type(clock) is SystemClock else clock.time

    # raw access for tests (corrupt-value injection, inspection)
    def raw_set(self, backend: str, fields: Mapping[str, Any], ttl: float | None = None) -> None:
        """Write raw (possibly corrupt) field values, like an admin ``HSET``."""
        with self._lock:
            ent = self._live(backend, self.clock.time())
            enc = dict(ent[0]) if ent else {}
            enc.update(fields)
            exp = ent[3] if ent else self.clock.time() + (ttl or self.ttl)
            self._data[backend] = [enc, None, (), exp, None]

    def raw_get(self, backend: str) -> dict[str, Any] | None:
        with self._lock:
            ent = self._live(backend, self.clock.time())
            return dict(ent[0]) if ent else None

    def ttl_of(self, backend: str) -> float | None:
        with self._lock:
            ent = self._live(backend, self.clock.time())
            return None if ent is None else ent[3] - self.clock.time()

    def _live(self, backend: str, now: float) -> list[Any] | None:
        ent = self._data.get(backend)
        if ent is not None and now >= ent[3]:
            del self._data[backend]
            return None
        return ent

    def _read(self, backend: str, now: float) -> tuple[Record, tuple[str, ...]]:
        ent = self._live(backend, now)
        if ent is None:
            return DEFAULT, ()
        if ent[1] is None:
            ent[1], ent[2] = decode(ent[0])
        if self._fast and ent[4] is None:
            ent[4] = _fast_view(ent[1], ent[2], self.op_ids)  # one atomic store, read by the fast path
        return ent[1], ent[2]

    def _write(self, backend: str, rec: Record, now: float) -> None:
        t = kernel.ttl_for(rec, now, self.ttl, self.probe_ttl)
        # decoded lazily from the canonical encoding, so reads see stored precision (%.6f) like Redis
        self._data[backend] = [encode(rec), None, (), now + t, None]

    def _now(self, now: float | None) -> float:
        return self.clock.time() if now is None else check_now(now)  # type: ignore[return-value]

    def _run(self, backend: str, now: float | None, fn: Any) -> tuple[kernel.Outcome, float, tuple[str, ...]]:
        return self._run_at(backend, self._now(now), fn)

    def _run_at(self, backend: str, t: float, fn: Any) -> tuple[kernel.Outcome, float, tuple[str, ...]]:
        with self._lock:
            rec, corrupt = self._read(backend, t)
            o = fn(rec, t)
            if self._pause_hook is not None:
                self._in_hook = True
                try:
                    self._pause_hook()
                finally:
                    self._in_hook = False
            if o.applied:
                self._write(backend, o.record, t)
        return o, t, corrupt

    def _reply(self, o: kernel.Outcome, t: float, corrupt: tuple[str, ...]) -> dict[str, Any]:
        """Like :func:`reply`, reusing the encoded view of an unchanged record (the hot no-write path)."""
        rec = o.record
        cached = self._dict_cache
        if cached is not None and cached[0] is rec:
            d = dict(cached[1])
        else:
            d = rec.to_dict()
            self._dict_cache = (rec, dict(d))
        d.update(o.meta(t, corrupt))
        return d

    # ---- protocol ----
    def get_state(self, backend: str) -> dict[str, Any]:
        check_backend(backend)
        with self._lock:
            rec, corrupt = self._read(backend, self.clock.time())
        d = kernel.normalize(rec).to_dict()
        d["_corrupt"] = list(corrupt)
        return d

    def set_state(self, backend: str, state: Mapping[str, Any]) -> None:
        check_backend(backend)
        upd = check_updates(state)
        rec = kernel.normalize(DEFAULT.replace(**upd))
        t = self.clock.time()
        with self._lock:
            old, _ = self._read(backend, t)
            self._write(backend, rec.replace(probe_generation=old.probe_generation, recent_ops=old.recent_ops), t)

    def cas_state(self, backend: str, expected_state: str, updates: Mapping[str, Any], *,
                  expected_fields: Mapping[str, Any] | None = None) -> bool:
        check_backend(backend)
        if expected_state not in STATES:
            return False
        upd = check_updates(updates)
        o, _, _ = self._run(backend, None, lambda r, t: kernel.cas_state(r, expected_state, upd, expected_fields))
        return bool(o.value)

    def increment_failure(self, backend: str) -> int:
        check_backend(backend)
        o, _, _ = self._run(backend, None, lambda r, t: kernel.increment_failure(r, t))
        return int(o.value)

    def atomic_record_failure(self, backend: str, failure_threshold: int, recovery_timeout: float, *,
                              op_id: str | None = None, now: float | None = None) -> dict[str, Any]:
        check_backend(backend)
        failure_threshold, recovery_timeout = check_threshold(failure_threshold), check_recovery(recovery_timeout)
        oid = resolve_op_id(op_id, self.op_ids)
        o, t, c = self._run(backend, now,
                            lambda r, t: kernel.record_failure(r, t, oid, failure_threshold, recovery_timeout))
        return self._reply(o, t, c)

    # The closed no-ops (G1, and S2 on a zero count) answer from the entry's fast view without the lock
    # (docs/breaker-design.md#hot-path). The public ops inline the common case (no op id, no ``now``: one
    # call costs as much as the rest); a gate's admission is an ``_Admitted``, its reply built on first use.
    def atomic_record_success(self, backend: str, expected_state: str | None = None, *,
                              op_id: str | None = None, now: float | None = None) -> dict[str, Any]:
        if op_id is None and now is None and not expected_state and self._fast and backend.__class__ is str:
            n = next(self._counter)
            t = self._time()
            ent = self._data.get(backend)
            v = self._default_view if ent is None else ent[4] if t < ent[3] else None
            if v is not None and v[1] and n not in v[5]:
                d = v[2].copy()  # S2 no-op on a zero-count CLOSED record: kernel result, no write
                d["_now"] = t
                d["_corrupt"] = list(v[3]) if v[3] else []
                return d
            return self._success_at(backend, t, self.op_ids.format(n), None)
        check_backend(backend)
        if expected_state and expected_state not in STATES:
            raise ValueError(f"expected_state must be one of {STATES} or None, got {expected_state!r}")
        oid = resolve_op_id(op_id, self.op_ids)
        t = self._now(now)
        if self._fast and (not expected_state or expected_state == "closed"):
            v = self._view_at(backend, t)
            if v is not None and v[1] and oid not in v[4]:
                return self.noop_reply(v, t)
        return self._success_at(backend, t, oid, expected_state or None)

    def _success_at(self, backend: str, t: float, oid: str, expected_state: str | None) -> dict[str, Any]:
        strict = self.strict_probe_ownership
        o, t, c = self._run_at(backend, t, lambda r, t: kernel.record_success(r, t, oid, expected_state, strict))
        return self._reply(o, t, c)

    def try_transition_and_claim_probe(self, backend: str, now: float | None = None,
                                       recovery_timeout: float | None = None, *,
                                       lease_seconds: float | None = None,
                                       op_id: str | None = None) -> ClaimResult:
        if op_id is None and now is None and lease_seconds is None and self._fast and backend.__class__ is str:
            n = next(self._counter)
            t = self._time()
            ent = self._data.get(backend)
            v = self._default_view if ent is None else ent[4] if t < ent[3] else None
            if v is not None and v[0] and n not in v[5]:
                return _Admitted((v, t, []))  # G1: CLOSED admits without a write or a lock
            return self._gate_at(backend, t, self.op_ids.format(n), self.probe_lease_seconds)
        check_backend(backend)
        lease = self.probe_lease_seconds if lease_seconds is None else check_lease(lease_seconds)
        oid = resolve_op_id(op_id, self.op_ids)
        t = self._now(now)
        if self._fast:
            v = self._view_at(backend, t)
            if v is not None and v[0] and oid not in v[4]:
                return _Admitted((v, t, []))
        return self._gate_at(backend, t, oid, lease)

    def _gate_at(self, backend: str, t: float, oid: str, lease: float) -> ClaimResult:
        o, t, c = self._run_at(backend, t, lambda r, t: kernel.gate(r, t, oid, lease))
        return ClaimResult(o.won, self._reply(o, t, c), o.label if o.won else "")

    def _view_at(self, backend: str, t: float) -> FastView | None:
        """The live entry's fast view at ``t`` (the default record's for a missing key), None until the
        entry's first read made it (or once it expired). Entries are replaced whole, never mutated in
        place, so this lock-free read is one linearisation point."""
        ent = self._data.get(backend)
        return self._default_view if ent is None else ent[4] if t < ent[3] else None

    # ---- hot ops (HotOps, docs/breaker-design.md#hot-path) ----
    def hot_ops(self) -> HotOps | None:
        """This store, whose ``hot_gate``/``hot_success`` skip the internals a subclass may override: None
        for a subclass (e.g. the mutants), which gets the general path."""
        return self if self._fast else None

    def hot_gate(self, backend: str, n: int, lease_seconds: float) -> NoOp | ClaimResult:
        """``try_transition_and_claim_probe(backend, lease_seconds=..., op_id=op_ids.format(n))``, answering
        a G1 no-op on a record without corrupt fields with ``(view, now)``."""
        t = self._time()
        ent = self._data.get(backend)
        v = self._default_view if ent is None else ent[4] if t < ent[3] else None
        if v is not None and v[0] and not v[3] and n not in v[5]:
            return v, t
        return self._gate_at(backend, t, self.op_ids.format(n), lease_seconds)

    def hot_success(self, backend: str, n: int) -> NoOp | dict[str, Any]:
        """``atomic_record_success(backend, op_id=op_ids.format(n))``, answering an S2 no-op on a zero-count
        CLOSED record without corrupt fields with ``(view, now)``."""
        t = self._time()
        ent = self._data.get(backend)
        v = self._default_view if ent is None else ent[4] if t < ent[3] else None
        if v is not None and v[1] and not v[3] and n not in v[5]:
            return v, t
        return self._success_at(backend, t, self.op_ids.format(n), None)

    @staticmethod
    def noop_reply(view: FastView, now: float) -> dict[str, Any]:
        """The reply a no-op answered ``(view, now)`` stands for (the kernel's, as ``_fast_view`` made it)."""
        d = view[2].copy()
        d["_now"] = now
        d["_corrupt"] = list(view[3]) if view[3] else []
        return d

    def renew_probe(self, backend: str, probe_token: str, *, lease_seconds: float | None = None,
                    op_id: str | None = None, now: float | None = None) -> bool:
        check_backend(backend)
        check_token(probe_token)
        lease = self.probe_lease_seconds if lease_seconds is None else check_lease(lease_seconds)
        o, _, _ = self._run(backend, now, lambda r, t: kernel.renew_probe(r, t, probe_token, lease))
        return bool(o.value)

    def release_probe(self, backend: str, probe_token: str, outcome: str, *, recovery_timeout: float,
                      op_id: str | None = None, now: float | None = None) -> dict[str, Any]:
        check_backend(backend)
        check_token(probe_token)
        check_outcome(outcome)
        recovery_timeout = check_recovery(recovery_timeout)
        oid = resolve_op_id(op_id, self.op_ids)
        o, t, c = self._run(backend, now,
                            lambda r, t: kernel.release_probe(r, t, oid, probe_token, outcome, recovery_timeout))
        return self._reply(o, t, c)

    def force_open(self, backend: str, open_for_seconds: float, *, op_id: str | None = None,
                   now: float | None = None) -> dict[str, Any]:
        check_backend(backend)
        d = check_open_for(open_for_seconds)
        oid = resolve_op_id(op_id, self.op_ids)
        o, t, c = self._run(backend, now, lambda r, t: kernel.force_open(r, t, oid, d))
        return self._reply(o, t, c)

    def reset(self, backend: str, *, op_id: str | None = None, now: float | None = None) -> dict[str, Any]:
        check_backend(backend)
        oid = resolve_op_id(op_id, self.op_ids)
        o, t, c = self._run(backend, now, lambda r, t: kernel.reset(r, t, oid))
        return self._reply(o, t, c)

    def clear(self, backend: str) -> None:
        with self._lock:
            self._data.pop(backend, None)


class AsyncInMemoryStore:
    """Async facade over :class:`InMemoryStore`; never awaits while holding the lock."""

    def __init__(self, inner: InMemoryStore | None = None, **kw: Any) -> None:
        self.inner = inner or InMemoryStore(**kw)

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.inner, name)
        if not callable(fn) or name.startswith("_"):
            return fn

        async def wrapper(*a: Any, **k: Any) -> Any:
            return fn(*a, **k)

        return wrapper


def make_store(backend: str = "memory", **kwargs: Any) -> Any:
    """``"memory"``, ``"redis"`` (needs ``redis_client``), ``"redis-async"``; forwards every keyword."""
    if backend == "memory":
        return InMemoryStore(**kwargs)
    if backend in ("redis", "redis-async"):
        client = kwargs.pop("redis_client", None)
        if client is None:
            raise ValueError(f"redis_client is required for backend={backend!r}")
        from .redis_store import AsyncRedisStore, RedisStore

        cls = RedisStore if backend == "redis" else AsyncRedisStore
        return cls(client, **kwargs)
    raise ValueError(f"Unknown circuit breaker store backend: {backend}")


def new_op_id() -> str:
    return uuid.uuid4().hex
