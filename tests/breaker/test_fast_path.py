"""``InMemoryStore``'s lock-free closed-state fast path answers exactly what the kernel answers.

The reference is the same store with the fast path off (a subclass: only exact ``InMemoryStore``
instances take it), so every reply, stored record and TTL is compared against the kernel path over
random records and op programs: corrupt fields, duplicate op ids (including ids the store's own
generator will produce next), expiry, explicit and clock time, every expected state. A deliberately
broken fast path (success no-op ignoring ``failure_count``; gate ignoring duplicates) must be caught.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from pytest_cbchaos.breaker import kernel, store as store_mod
from pytest_cbchaos.breaker.record import DEFAULT, Record, encode
from pytest_cbchaos.breaker.store import InMemoryStore
from pytest_cbchaos.faults.clock import ManualClock

import record_strategies

T0 = 1_795_000_000.0
PREFIX = "0123456789abcdef"
POOL = [f"{PREFIX}{n:016x}" for n in range(1, 13)] + ["e" * 32, "f" * 32]


class KernelOnlyStore(InMemoryStore):
    """The reference: identical code, but a subclass, so every op goes through the kernel under the lock."""


def _pair(ttl: int = 3600) -> tuple[InMemoryStore, InMemoryStore, ManualClock]:
    clock = ManualClock(T0)
    fast, ref = InMemoryStore(clock=clock, ttl=ttl), KernelOnlyStore(clock=clock, ttl=ttl)
    assert fast._fast and not ref._fast
    for s in (fast, ref):
        s.op_ids._prefix = PREFIX  # same op-id sequence: tokens and recent_ops compare equal
        s._default_view = store_mod._fast_view(DEFAULT, (), s.op_ids)
    return fast, ref, clock


records = record_strategies.records(T0, 50, POOL, counts=[0, 0, 1, 2, 7], generation=5, token_gen=3, max_ops=4)
corrupt = record_strategies.corrupt_fields(["failure_count", "state", "half_open_probe_active", "open_until",
                                            "recent_ops"], ["abc", "-1", "TRUE", "nan", "zz=open>closed"], 2)
op_ids = st.one_of(st.none(), st.none(), st.sampled_from(POOL))
now_arg = st.one_of(st.none(), st.floats(min_value=-5, max_value=60).map(lambda d: round(T0 + d, 3)))
ops = st.one_of(
    st.tuples(st.just("gate"), op_ids, now_arg),
    st.tuples(st.just("success"), op_ids, now_arg, st.sampled_from([None, "", "closed", "open", "half_open"])),
    st.tuples(st.just("failure"), op_ids, now_arg, st.integers(1, 3)),
    st.tuples(st.just("force_open"), op_ids, now_arg),
    st.tuples(st.just("reset"), op_ids, now_arg),
    st.tuples(st.just("raw"), records, corrupt),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 3.0, 20.0])),
)


def _apply(s: InMemoryStore, op: tuple[Any, ...]) -> Any:
    kind = op[0]
    if kind == "gate":  # the fast path's ClaimResult subclass answers the properties as class attributes
        r = s.try_transition_and_claim_probe("b", op[2], 10.0, op_id=op[1])
        return tuple(r), r.admitted, r.token, r.retry_after
    if kind == "success":
        return s.atomic_record_success("b", op[3], op_id=op[1], now=op[2])
    if kind == "failure":
        return s.atomic_record_failure("b", op[3], 10.0, op_id=op[1], now=op[2])
    if kind == "force_open":
        return s.force_open("b", 5.0, op_id=op[1], now=op[2])
    if kind == "reset":
        return s.reset("b", op_id=op[1], now=op[2])
    if kind == "raw":
        return s.raw_set("b", {**encode(op[1]), **op[2]})
    raise AssertionError(kind)


def first_mismatch(program: list[tuple[Any, ...]], ttl: int = 3600) -> str | None:
    """Run ``program`` on a fast store and on the kernel-only reference; describe the first difference."""
    fast, ref, clock = _pair(ttl)
    for i, op in enumerate(program):
        if op[0] == "advance":
            clock.advance(op[1])
            continue
        got, want = _apply(fast, op), _apply(ref, op)
        if got != want:
            return f"op {i} {op!r}: fast {got!r} != kernel {want!r}"
        if fast.raw_get("b") != ref.raw_get("b") or fast.ttl_of("b") != ref.ttl_of("b"):
            return f"op {i} {op!r}: stored record differs"
        if fast.op_ids.format(0) != ref.op_ids.format(0) or next(fast.op_ids.counter) != next(ref.op_ids.counter):
            return f"op {i} {op!r}: op-id sequence differs"
    return None


@settings(max_examples=150, deadline=None)
@given(program=st.lists(ops, min_size=1, max_size=14), ttl=st.sampled_from([5, 3600]))
def test_fast_path_equals_kernel_over_programs(program: list[tuple[Any, ...]], ttl: int) -> None:
    assert first_mismatch(program, ttl) is None


@settings(max_examples=300, deadline=None)
@given(rec=records, bad=corrupt, op_id=op_ids, expected=st.sampled_from([None, "", "closed", "open", "half_open"]),
       dt=st.floats(min_value=-5, max_value=60))
def test_fast_path_equals_kernel_from_any_record(rec: Record, bad: dict, op_id: str | None,
                                                 expected: str | None, dt: float) -> None:
    now = round(T0 + dt, 3)
    assert first_mismatch([("raw", rec, bad), ("gate", op_id, now)]) is None
    assert first_mismatch([("raw", rec, bad), ("success", op_id, now, expected)]) is None
    # and the fast path's precondition really is "the kernel returns no change"
    v = store_mod._fast_view(rec, (), _pair()[0].op_ids)
    if v[0]:
        assert not kernel.gate(rec, now, "d" * 32, 30.0).applied
    if v[1] and expected in (None, "", "closed"):
        assert not kernel.record_success(rec, now, "d" * 32, expected or None).applied


def test_fast_path_is_taken_for_closed_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without this the differential tests could pass with the fast path never running."""
    fast, _, _ = _pair()
    fast.atomic_record_failure("b", 5, 10.0, now=T0)
    fast.atomic_record_success("b", now=T0)  # S2 resets the count (kernel path), then no-ops are fast
    fast.get_state("b")
    calls: list[str] = []
    monkeypatch.setattr(kernel, "gate", lambda *a, **k: calls.append("gate"))
    monkeypatch.setattr(kernel, "record_success", lambda *a, **k: calls.append("success"))
    for _ in range(3):
        assert fast.try_transition_and_claim_probe("b").admitted
        assert fast.atomic_record_success("b")["_applied"] is False
        assert fast.atomic_record_success("b", "closed")["_reason"] == ""
    assert calls == []
    fast.try_transition_and_claim_probe("fresh")  # missing key: the default record's view
    assert calls == []


def test_duplicate_of_a_future_own_op_id_goes_to_the_kernel() -> None:
    """An injected ``recent_ops`` entry with the id the store will generate next must answer ``duplicate``."""
    fast, ref, _ = _pair()
    nxt = f"{PREFIX}{1:016x}"
    for s in (fast, ref):
        s.raw_set("b", encode(DEFAULT.replace(recent_ops=((nxt, "open", "closed"),))))
    a, b = fast.atomic_record_success("b", now=T0), ref.atomic_record_success("b", now=T0)
    assert a == b and a["_duplicate"] is True


# ---- mutants: a broken fast path must be caught ------------------------------------------------

def _broken_view_ignores_count(rec: Record, corrupt: tuple[str, ...], ids: Any) -> Any:
    v = _real_view(rec, corrupt, ids)
    nrec = kernel.normalize(rec)
    tmpl = store_mod.reply(kernel.Outcome(nrec, nrec.state, nrec.state, False), 0.0, corrupt)
    return (v[0], nrec.state == "closed", tmpl if nrec.state == "closed" else v[2], v[3], v[4], v[5])


def _broken_view_ignores_dups(rec: Record, corrupt: tuple[str, ...], ids: Any) -> Any:
    v = _real_view(rec, corrupt, ids)
    return (*v[:4], frozenset(), frozenset())


_real_view = store_mod._fast_view


@pytest.mark.parametrize("mutant", [_broken_view_ignores_count, _broken_view_ignores_dups])
def test_differential_catches_broken_fast_path(monkeypatch: pytest.MonkeyPatch, mutant: Any) -> None:
    monkeypatch.setattr(store_mod, "_fast_view", mutant)
    program = [("failure", None, T0, 5), ("gate", None, T0 + 1), ("success", None, T0 + 1, None),
               ("raw", DEFAULT.replace(recent_ops=((POOL[0], "open", "closed"),)), {}),
               ("success", POOL[0], T0 + 2, None), ("gate", POOL[0], T0 + 2)]
    assert first_mismatch(program) is not None
    monkeypatch.setattr(store_mod, "_fast_view", _real_view)
    assert first_mismatch(program) is None


@pytest.mark.parametrize("attr,wrong", [("admitted", False), ("token", "1:" + "a" * 32), ("retry_after", 1.0)])
def test_differential_catches_wrong_admission_attribute(monkeypatch: pytest.MonkeyPatch, attr: str, wrong: Any) -> None:
    monkeypatch.setattr(store_mod._Admitted, attr, wrong)
    assert first_mismatch([("gate", None, None)]) is not None


def test_a_changed_admission_is_a_plain_claim_result() -> None:
    fast, _, _ = _pair()
    r = fast.try_transition_and_claim_probe("b")
    assert type(r) is not store_mod.ClaimResult and r.admitted
    changed = r._replace(record={**r.record, "_prev_state": "open"})
    assert type(changed) is store_mod.ClaimResult and not changed.admitted
