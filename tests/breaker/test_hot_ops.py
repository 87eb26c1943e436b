"""The store's hot-ops interface and the lazy CLOSED admission (docs/breaker-design.md#hot-path).

* ``CircuitBreaker.call`` takes its hot path through any store whose ``hot_ops()`` answers a ``HotOps``
  object and the general path through a store without ``hot_ops`` or answering None; it draws its op ids
  from the store's ``op_ids`` either way.
* A gate's no-op admission in CLOSED (``_Admitted``) builds its reply only when read, and is, for every
  tuple operation Python offers, the ``ClaimResult(False, reply, "")`` it stands for; each of its
  overrides is needed (removing one is caught).
"""

from __future__ import annotations

import copy
import pickle
from typing import Any, Callable

import pytest

from pytest_cbchaos.breaker import BreakerConfig, CircuitBreaker, ClaimResult, InMemoryStore
from pytest_cbchaos.breaker import store as store_mod
from pytest_cbchaos.breaker.record import DEFAULT, encode
from pytest_cbchaos.faults.clock import ManualClock

T0 = 1_795_000_000.0


class RecordingHotOps:
    """A store's own HotOps: an InMemoryStore's, every call recorded."""

    def __init__(self, inner: InMemoryStore) -> None:
        self.inner, self.calls = inner, []
        self.op_ids = inner.op_ids

    def hot_gate(self, backend: str, n: int, lease_seconds: float) -> Any:
        self.calls.append(("gate", n))
        return self.inner.hot_gate(backend, n, lease_seconds)

    def hot_success(self, backend: str, n: int) -> Any:
        self.calls.append(("success", n))
        return self.inner.hot_success(backend, n)

    def noop_reply(self, view: Any, now: float) -> dict[str, Any]:
        self.calls.append(("noop_reply",))
        return self.inner.noop_reply(view, now)


class OwnHotOpsStore(InMemoryStore):
    """A subclass (so no inherited hot ops) offering its own."""

    def hot_ops(self) -> RecordingHotOps:
        self.recording = RecordingHotOps(InMemoryStore(clock=self.clock))
        return self.recording


class Delegating:
    """A store without ``hot_ops``: the protocol ops of an InMemoryStore, counted."""

    def __init__(self, inner: InMemoryStore) -> None:
        self.inner, self.gates = inner, 0

    def try_transition_and_claim_probe(self, *a: Any, **k: Any) -> Any:
        self.gates += 1
        return self.inner.try_transition_and_claim_probe(*a, **k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _breaker(store: Any) -> CircuitBreaker:
    return CircuitBreaker("b", BreakerConfig(probe_heartbeat=False), store=store, clock=ManualClock(T0))


def test_a_store_offering_its_own_hot_ops_gets_the_hot_path() -> None:
    store = OwnHotOpsStore(clock=ManualClock(T0))
    cb = _breaker(store)
    assert cb.call(lambda: 1) == 1 and cb.call(lambda: 2) == 2
    rec = store.recording
    # two gates and two successes with consecutive counters of the hot ops' own generator; one note
    assert [c[0] for c in rec.calls] == ["gate", "noop_reply", "success", "gate", "success"]
    assert [c[1] for c in rec.calls if len(c) == 2] == [1, 2, 3, 4] and cb._op_ids is rec.op_ids


def test_a_store_declining_hot_ops_gets_the_general_path() -> None:
    sub = type("Sub", (InMemoryStore,), {})(clock=ManualClock(T0))
    assert sub.hot_ops() is None and _breaker(sub)._hot is None
    cb = _breaker(sub)
    assert cb._op_ids is sub.op_ids  # ids still drawn from the store's generator
    wrapped = Delegating(InMemoryStore(clock=ManualClock(T0)))
    cb = _breaker(wrapped)
    assert cb._hot is None and cb.call(lambda: 3) == 3 and wrapped.gates == 1
    assert _breaker(InMemoryStore())._hot is not None
    assert CircuitBreaker("b", BreakerConfig(enabled=False), store=InMemoryStore())._hot is None


# ---- the lazy CLOSED admission ---------------------------------------------------------------

def _admission(corrupt: bool = False) -> tuple[ClaimResult, ClaimResult, InMemoryStore]:
    """A lazy admission and the eager ClaimResult it stands for (the reply built from the same view)."""
    st = InMemoryStore(clock=ManualClock(T0))
    if corrupt:
        st.raw_set("b", {**encode(DEFAULT), "probe_generation": "abc"})
        st.get_state("b")  # a written entry's fast view is made by its first read
    lazy = st.try_transition_and_claim_probe("b")
    assert type(lazy) is store_mod._Admitted
    view, now = tuple.__getitem__(lazy, 0), tuple.__getitem__(lazy, 1)
    return lazy, ClaimResult(False, st.noop_reply(view, now), ""), st


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        out = fn()
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))
    return ("ok", type(out).__name__, out if not isinstance(out, ClaimResult) else ("claim", tuple(out)))


def _match(c: Any) -> Any:
    match c:
        case ClaimResult(won=won, record=record, label=label):
            by_class = (won, record, label)
    match c:
        case (won, record, label):
            return by_class, (won, record, label)
    return by_class, None


OPS: dict[str, Callable[[Any], Any]] = {
    "tuple": lambda c: tuple(c),
    "list": lambda c: list(c),
    "unpack": lambda c: (lambda won, record, label: (won, record, label))(*c),
    "index 0..2": lambda c: (c[0], c[1], c[2], c[-1]),
    "slice": lambda c: c[0:2],
    "len": lambda c: len(c),
    "bool": lambda c: bool(c),
    "fields": lambda c: (c.won, c.record, c.label),
    "properties": lambda c: (c.admitted, c.token, c.retry_after),
    "eq": lambda c: (c == ClaimResult(False, c.record, ""), ClaimResult(False, c.record, "") == c,
                     (False, c.record, "") == c, c == (False, c.record, "x"), c == c),
    "ne": lambda c: (c != ClaimResult(False, c.record, ""), (False, c.record, "") != c),
    "lt le gt ge": lambda c: (c < (True,), c <= (True,), c > (False,), c >= (False,)),
    "in": lambda c: (False in c, "" in c, 0.5 in c),
    "count index": lambda c: (c.count(False), c.index("")),
    "add": lambda c: (c + (1,), (1,) + c),
    "mul": lambda c: (c * 2, 2 * c),
    "reversed": lambda c: list(reversed(c)),
    "repr": lambda c: repr(c),
    "hash": lambda c: hash(c),
    "asdict": lambda c: c._asdict(),
    "replace": lambda c: c._replace(label="x"),
    "copy": lambda c: copy.copy(c),
    "deepcopy": lambda c: copy.deepcopy(c),
    "pickle": lambda c: pickle.loads(pickle.dumps(c)),
    "match": lambda c: _match(c),
    "types": lambda c: (isinstance(c, ClaimResult), isinstance(c, tuple)),
}


def differences(lazy: ClaimResult, eager: ClaimResult) -> list[str]:
    return [f"{name}: lazy {_outcome(lambda: op(lazy))!r} != eager {_outcome(lambda: op(eager))!r}"
            for name, op in OPS.items() if _outcome(lambda: op(lazy)) != _outcome(lambda: op(eager))]


@pytest.mark.parametrize("corrupt", [False, True])
def test_lazy_admission_is_the_claim_it_stands_for(corrupt: bool) -> None:
    lazy, eager, _ = _admission(corrupt)
    assert differences(lazy, eager) == []
    assert lazy.record is lazy.record and lazy.record["_corrupt"] == (["probe_generation"] if corrupt else [])
    lazy.record["mine"] = 1  # one dict: a caller's change stays
    assert lazy[1]["mine"] == 1 and dict(lazy._asdict()["record"])["mine"] == 1


def test_lazy_admission_builds_its_reply_only_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[float] = []
    real = InMemoryStore.noop_reply

    def counting(view: Any, now: float) -> dict[str, Any]:
        built.append(now)
        return real(view, now)
    monkeypatch.setattr(InMemoryStore, "noop_reply", staticmethod(counting))
    st = InMemoryStore(clock=ManualClock(T0))
    for _ in range(3):
        assert st.try_transition_and_claim_probe("b").admitted
    assert built == []
    c = st.try_transition_and_claim_probe("b")
    assert c.record["_now"] == T0 and c[1] is c.record and built == [T0]


# every override that carries meaning (the class attributes admitted/token/retry_after only save a
# property call; test_fast_path.py catches wrong values of them)
OVERRIDES = ["won", "label", "record", "_make", "__reduce__", "__iter__", "__getitem__", "__contains__",
             "__hash__", "__repr__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__add__",
             "__radd__", "__mul__", "__rmul__", "count", "index"]


def test_overrides_are_the_whole_list() -> None:
    # ``__slotnames__``: copyreg's cache, set on the class once any instance was pickled or copied
    own = {k for k in vars(store_mod._Admitted)
           if k not in ("__module__", "__doc__", "__slots__", "__slotnames__", "_claim")}
    assert own - {"admitted", "token", "retry_after"} == set(OVERRIDES)


@pytest.mark.parametrize("name", OVERRIDES)
def test_a_missing_override_is_caught(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    if name == "__hash__":  # what a class defining __eq__ gets without it (tuple's would also raise for the dict)
        monkeypatch.setattr(store_mod._Admitted, name, None)
    else:
        monkeypatch.delattr(store_mod._Admitted, name)
    lazy, eager, _ = _admission()
    assert differences(lazy, eager) != []
