"""``CircuitBreaker.call``'s hot path does what the plain path does (docs/breaker-design.md#hot-path).

The reference is the same breaker on a subclass of ``InMemoryStore``: neither the store's fast path nor
the breaker's hot path runs there (both need an exact ``InMemoryStore``), so every op goes through
``acquire``, a ``Permit`` and the kernel under the lock, as before the hot path. Two worlds (clock, store,
breaker, one recorder for listener events and metrics) run the same generated program; after every op
the answers (result or exception), events, metrics, stored record, TTL, record-loss state and op-id
counter must be equal. Programs cover calls that succeed, fail (counted or not), raise BaseException,
write the record or move the clock mid-call; corrupt and lost records; op ids the store will draw next
already in ``recent_ops``; probes. Deliberately broken hot paths must be caught.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import given, strategies as st

from pytest_cbchaos.breaker import BreakerConfig, CircuitBreaker, CircuitBreakerOpenError, kernel
from pytest_cbchaos.breaker import breaker as breaker_mod
from pytest_cbchaos.breaker.record import DEFAULT, STATES, Record, encode
from pytest_cbchaos.breaker.store import InMemoryStore
from pytest_cbchaos.faults.clock import ManualClock

import record_strategies

T0 = 1_795_000_000.0
PREFIX = "0123456789abcdef"
OTHER = ["e" * 32, "f" * 32]


class KernelOnlyStore(InMemoryStore):
    """The reference: a subclass, so no fast path in the store and no hot path in the breaker."""


class Recorder:
    """Listener and metrics in one: every event and metric call, in order."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    def on_transition(self, ev: Any) -> None:
        self.log.append(ev)

    def on_request(self, ev: Any) -> None:
        self.log.append(ev)

    def on_store_event(self, ev: Any) -> None:
        self.log.append(ev)

    def record_state_transition(self, backend: str, prev: str, new: str) -> None:
        self.log.append(("transition", backend, prev, new))

    def record_request(self, backend: str, outcome: str, latency: float) -> None:
        self.log.append(("request", backend, outcome, latency))


class Stop(BaseException):
    """Like KeyboardInterrupt: never counted, never caught as an Exception."""


class World:
    def __init__(self, store_cls: type[InMemoryStore], observed: bool, ttl: int) -> None:
        self.clock = ManualClock(T0)
        self.store = store_cls(clock=self.clock, ttl=ttl)
        self.store.op_ids._prefix = PREFIX  # both worlds draw the same op ids
        self.rec = Recorder()
        cfg = BreakerConfig(failure_threshold=2, cooldown_s=10, probe_heartbeat=False)
        self.cb = CircuitBreaker("b", cfg, store=self.store, clock=self.clock,
                                 listeners=[self.rec] if observed else (), metrics=self.rec if observed else None)

    def next_counter(self) -> int:
        return int(repr(self.store.op_ids.counter)[6:-1])  # itertools.count(n): the next value, not consumed


def _fn(w: World, how: str, arg: Any) -> Any:
    def fn(x: Any, *, y: Any = None) -> Any:
        if how == "counted":
            raise ConnectionError("down")
        if how == "uncounted":
            raise ValueError("bad")
        if how == "stop":
            raise Stop()
        if how == "advance":
            w.clock.advance(arg)
        elif how == "write":
            w.store.raw_set("b", encode(arg))
        elif how == "fail_inside":
            w.store.atomic_record_failure("b", 1, 10.0)
        return (x, y)
    return fn


def _apply(w: World, op: tuple[Any, ...]) -> Any:
    kind = op[0]
    if kind == "call":
        return w.cb.call(_fn(w, op[1], op[2]), "r", y=1)
    if kind == "decorated":
        return w.cb(_fn(w, op[1], op[2]))("d")
    if kind == "permit":
        p = w.cb.acquire()
        return (p.admitted, p.probe_token, p.state), getattr(p, op[1])()
    if kind == "raw":
        return w.store.raw_set("b", {**encode(op[1]), **op[2]})
    if kind == "raw_next_ids":  # recent_ops holding the ids the store will draw next (duplicates)
        n = w.next_counter()
        ops = tuple((f"{PREFIX}{n + i:016x}", a, b) for i, (a, b) in enumerate(op[1]))
        return w.store.raw_set("b", encode(op[2].replace(recent_ops=ops)))
    if kind == "read":  # makes a written entry's fast view
        return w.cb.state.value
    if kind == "clear":
        return w.store.clear("b")
    if kind == "advance":
        return w.clock.advance(op[1])
    if kind == "force_open":
        return w.cb.force_open("x", op[1])
    if kind == "reset":
        return w.cb.reset()
    raise AssertionError(kind)


def answer(thunk: Callable[[], Any]) -> tuple[Any, ...]:
    """An op's answer: its result, the open circuit's state, or the exception it raised."""
    try:
        return ("ok", thunk())
    except CircuitBreakerOpenError as exc:
        return ("open", exc.state, exc.retry_after)
    except (Exception, Stop) as exc:
        return ("raised", type(exc).__name__, str(exc))


def _observe(w: World, op: tuple[Any, ...]) -> tuple[Any, ...]:
    out = answer(lambda: _apply(w, op))
    events, w.rec.log = w.rec.log, []
    return (out, events, w.store.raw_get("b"), w.store.ttl_of("b"), w.cb._hw_gen, w.cb._hw_hist,
            w.next_counter())


def first_mismatch(program: list[tuple[Any, ...]], observed: bool = True, ttl: int = 3600) -> str | None:
    """Run ``program`` on a hot-path world and on the reference world; describe the first difference."""
    hot, ref = World(InMemoryStore, observed, ttl), World(KernelOnlyStore, observed, ttl)
    assert hot.cb._hot is hot.store and ref.cb._hot is None
    for i, op in enumerate(program):
        got, want = _observe(hot, op), _observe(ref, op)
        if got != want:
            return f"op {i} {op!r}:\n  hot path  {got!r}\n  reference {want!r}"
    return None


pairs = st.tuples(st.sampled_from(STATES), st.sampled_from(STATES))
records = record_strategies.records(T0, 30, OTHER, counts=[0, 0, 1, 3], generation=4, token_gen=2, max_ops=2)
corrupt = record_strategies.corrupt_fields(["failure_count", "state", "probe_generation", "recent_ops"],
                                           ["abc", "-1", "zz=open>closed"], 1)
hows = st.sampled_from(["ok", "ok", "ok", "counted", "uncounted", "stop", "advance", "write", "fail_inside"])
ops = st.one_of(
    st.tuples(st.just("call"), hows, st.one_of(st.sampled_from([0.5, 11.0]), records)),
    st.tuples(st.just("decorated"), st.just("ok"), st.none()),
    st.tuples(st.just("permit"), st.sampled_from(["success", "failure", "release"])),
    st.tuples(st.just("raw"), records, corrupt),
    st.tuples(st.just("raw_next_ids"), st.lists(pairs, min_size=1, max_size=2), records),
    st.tuples(st.just("clear")),
    st.tuples(st.just("read")),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 3.0, 11.0])),
    st.tuples(st.just("force_open"), st.sampled_from([0.0, 5.0])),
    st.tuples(st.just("reset")),
)


def _normalize_args(op: tuple[Any, ...]) -> tuple[Any, ...]:
    """``call`` takes a clock step for "advance" and a record for "write"; anything else ignores its argument."""
    if op[0] != "call":
        return op
    how, arg = op[1], op[2]
    if how == "advance" and not isinstance(arg, float):
        return ("call", how, 0.5)
    if how == "write" and not isinstance(arg, Record):
        return ("call", how, DEFAULT)
    return op


@given(program=st.lists(ops.map(_normalize_args), min_size=1, max_size=25), observed=st.booleans(),
       ttl=st.sampled_from([5, 3600]))
def test_hot_path_equals_plain_path_over_programs(program: list[tuple[Any, ...]], observed: bool, ttl: int) -> None:
    assert first_mismatch(program, observed, ttl) is None


# ---- programs that reach each case the hot path must hand over (deterministic) ------------------

GEN3 = DEFAULT.replace(probe_generation=3, recent_ops=((OTHER[0], "half_open", "closed"),))
OK = ("call", "ok", None)
PROGRAMS = {
    # a lost record: its generation goes back, seen by a no-op gate
    "record_missing": [("raw", GEN3, {}), OK, ("clear",), OK],
    # a lost record after a plain-path note of the view the hot path noted before (the default view)
    "stale_note": [OK, ("raw", GEN3, {}), ("permit", "success"), ("clear",), OK],
    # the gate's and the success's op ids already recorded: duplicates, not no-ops
    "duplicate_gate": [("raw_next_ids", [("open", "half_open")], DEFAULT), ("read",), OK],
    "duplicate_success": [("raw_next_ids", [("closed", "closed"), ("closed", "open")], DEFAULT), ("read",), OK],
    # a count to clear, a corrupt field to report, a record written or opened during the call
    "count": [("call", "counted", None), OK, OK],
    "corrupt": [("raw", DEFAULT, {"probe_generation": "abc"}), OK, OK],
    "mid_call_write": [OK, ("call", "write", DEFAULT.replace(failure_count=1)), OK],
    "mid_call_open": [OK, ("call", "fail_inside", None), OK, ("advance", 11.0), OK, OK],
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_reference_programs_agree(name: str) -> None:
    assert first_mismatch(PROGRAMS[name]) is None
    assert first_mismatch(PROGRAMS[name], observed=False) is None


def test_hot_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without this the differential tests could pass with the hot path never running."""
    w = World(InMemoryStore, True, 3600)
    with pytest.raises(ConnectionError):
        _apply(w, ("call", "counted", None))
    _apply(w, OK)  # S2 clears the count on the plain path; from here on every call is a no-op
    w.store.get_state("b")  # a written entry's fast view is made by its first read
    boom = lambda *a, **k: pytest.fail("plain path taken")  # noqa: E731
    for name in ("gate", "record_success"):
        monkeypatch.setattr(kernel, name, boom)
    for name in ("try_transition_and_claim_probe", "atomic_record_success"):
        monkeypatch.setattr(w.store, name, boom)
    monkeypatch.setattr(breaker_mod, "Permit", boom)
    for _ in range(3):
        assert w.cb.call(lambda: 7) == 7
    w.store.clear("b")  # a missing record: the default record's view
    assert w.cb.call(lambda: 8) == 8


# ---- mutants: a broken hot path must be caught ---------------------------------------------------

def _never_notes(self: Any, v: Any, t: float) -> None:
    self._noted = v


_real_note_record = breaker_mod._Core._note_record


def _note_keeps_cache(self: Any, d: dict, token: str | None = None) -> None:
    keep = self._noted
    _real_note_record(self, d, token)
    self._noted = keep


def _admits_when(method: str, noop: Any) -> Any:
    """A broken ``InMemoryStore.hot_gate`` / ``hot_success`` answering a no-op whenever ``noop(view, n)``."""
    def broken(self: Any, backend: str, n: int, *lease: float) -> Any:
        t = self._time()
        v = self._view_at(backend, t)
        if v is not None and noop(v, n):
            return v, t
        oid = self.op_ids.format(n)
        return self._gate_at(backend, t, oid, *lease) if lease else self._success_at(backend, t, oid, None)
    return (InMemoryStore, method, broken)


MUTANTS = {
    "record_missing": (breaker_mod._Core, "_note_view", _never_notes),
    "stale_note": (breaker_mod._Core, "_note_record", _note_keeps_cache),
    # view fields: 0 gate no-op, 1 success no-op (zero count), 3 corrupt names, 5 own op-id counters
    "count": _admits_when("hot_success", lambda v, n: v[0] and not v[3] and n not in v[5]),
    "corrupt": _admits_when("hot_success", lambda v, n: v[1] and n not in v[5]),
    "duplicate_success": _admits_when("hot_success", lambda v, n: v[1] and not v[3]),
    "duplicate_gate": _admits_when("hot_gate", lambda v, n: v[0] and not v[3]),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_differential_catches_broken_hot_path(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    owner, attr, mutant = MUTANTS[name]
    monkeypatch.setattr(owner, attr, mutant)
    assert first_mismatch(PROGRAMS[name]) is not None
