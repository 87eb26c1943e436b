"""The search's read fast path (``Model.pure_value``, docs/linearizability.md#search) never
changes a verdict: on generated kv partitions, correct and perturbed, with values that match only
after normalisation (``b"a"`` vs ``"a"``, ``3`` vs ``"3"``), the search agrees with the same
search without the fast path and with a brute-force enumeration."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_cbchaos.history.ops import Op
from pytest_cbchaos.linearizability.models import KVModel
from pytest_cbchaos.linearizability.search import NO_VALUE, PartitionSearch

_VALUES = st.sampled_from(["", "a", "b", b"a", 3, "3"])


def _brute(ops: list[Op], model: Any) -> bool:
    def rec(state: Any, remaining: list[Op]) -> bool:
        if not remaining:
            return True
        min_ret = min(op.ret for op in remaining)
        for op in remaining:
            if op.call <= min_ret:
                ok, ns = model.step(state, op)
                if ok and rec(ns, [o for o in remaining if o is not op]):
                    return True
        return False
    return rec(model.init(), ops)


@st.composite
def _partitions(draw: Any) -> list[Op]:
    """One key's ops, simulated at drawn linearization points, then maybe one read perturbed."""
    n = draw(st.integers(1, 7))
    specs = []
    for i in range(n):
        f = draw(st.sampled_from(["read", "read", "write", "append"]))
        call, dur = draw(st.integers(0, 10)), draw(st.integers(0, 6))
        inp = None if f == "read" else draw(st.sampled_from(["a", "b", "3"]))
        specs.append((call, call + dur, call + draw(st.integers(0, dur)), i, f, inp))
    state: Any = ""
    outs: dict[int, Any] = {}
    for _, _, _, i, f, inp in sorted(specs, key=lambda s: (s[2], s[3])):
        if f == "read":
            outs[i] = draw(st.sampled_from([state, state.encode()])) if state else state
        else:
            state = inp if f == "write" else state + inp
    reads = sorted(outs)
    if reads and draw(st.booleans()):
        outs[draw(st.sampled_from(reads))] = draw(_VALUES)
    ops = [Op(0, i, f, inp, outs.get(i), call, ret, "ok", key="k")
           for call, ret, _, i, f, inp in sorted(specs)]
    return [op.with_id(j) for j, op in enumerate(ops)]


@settings(max_examples=300, deadline=None)
@given(_partitions())
def test_fast_path_agrees_with_step_and_brute_force(ops: list[Op]) -> None:
    fast = KVModel(initial="").partition_model("k")
    slow = type("NoFastPath", (type(fast),), {})("k", "")  # a variant: no pure_value
    s_fast, s_slow = PartitionSearch(ops, fast), PartitionSearch(ops, slow)
    assert any(v is not NO_VALUE for v in s_fast.pv) == any(op.f == "read" for op in ops)
    assert all(v is NO_VALUE for v in s_slow.pv)
    expect = "ok" if _brute(ops, fast) else "illegal"
    assert s_fast.run(10**9) == s_slow.run(10**9) == expect


def test_a_wrong_pure_value_is_caught() -> None:
    """Mutant: a fast path that trusts a read's value blindly changes a verdict."""
    ops = [Op(0, 0, "write", "a", None, 0, 1, "ok", key="k"),
           Op(1, 1, "read", None, "b", 2, 3, "ok", key="k")]
    model = KVModel(initial="").partition_model("k")
    assert PartitionSearch(ops, model).run(100) == "illegal"

    class Trusting(type(model)):  # type: ignore[misc]
        def pure_value(self, op: Op) -> Any:
            return "a" if op.f == "read" else NO_VALUE
    assert PartitionSearch(ops, Trusting("k", "")).run(100) == "ok"
