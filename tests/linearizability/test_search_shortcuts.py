"""The search's shortcuts never change a verdict: the read and update fast paths
(``Model.pure_value``, ``write_value``, ``append_value``) and
the replay of a sequential partition (``replay.py``), docs/linearizability-design.md#search. On generated
kv partitions, correct and perturbed, with values that match only after normalisation (``b"a"``
vs ``"a"``, ``3`` vs ``"3"``), each agrees with the plain search and a brute-force enumeration."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_cbchaos.history.ops import Op
from pytest_cbchaos.linearizability import Verdict, check
from pytest_cbchaos.linearizability.models import KVModel
from pytest_cbchaos.linearizability.replay import SequentialReplay, is_sequential
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
    sequential = draw(st.booleans())
    specs = []
    for i in range(n):
        f = draw(st.sampled_from(["read", "read", "write", "append"]))
        call, dur = draw(st.integers(0, 10)), draw(st.integers(0, 6))
        if sequential:  # end to end, sometimes touching (equal times overlap)
            call = specs[-1][1] + draw(st.integers(0, 2)) if specs else 0
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


@settings(deadline=None)
@given(_partitions())
def test_fast_path_agrees_with_step_and_brute_force(ops: list[Op]) -> None:
    fast = KVModel(initial="").partition_model("k")
    slow = type("NoFastPath", (type(fast),), {})("k", "")  # a variant: no pure/write/append_value
    s_fast, s_slow = PartitionSearch(ops, fast), PartitionSearch(ops, slow)
    for table, f in ((s_fast.pv, "read"), (s_fast.wv, "write"), (s_fast.av, "append")):
        assert [v is not NO_VALUE for v in table] == [op.f == f for op in ops]
    assert all(v is NO_VALUE for v in s_slow.pv + s_slow.wv + s_slow.av)
    expect = "ok" if _brute(ops, fast) else "illegal"
    assert s_fast.run(10**9) == s_slow.run(10**9) == expect


@settings(deadline=None)
@given(_partitions())
def test_replay_agrees_with_the_search(ops: list[Op]) -> None:
    model = KVModel(initial="").partition_model("k")
    touching = any(b.call <= a.ret for a, b in zip(ops, ops[1:]))
    assert is_sequential(ops) is not touching
    if not touching:
        replay, search = SequentialReplay(ops, model), PartitionSearch(ops, model)
        verdict = search.run(10**9)
        assert replay.run(10**9) == verdict
        if verdict == "ok":
            assert replay.linearization == search.linearization


@pytest.mark.parametrize("first, read, hook, wrong, right_verdict", [
    ("write", "b", "pure_value", lambda op: "a" if op.f == "read" else NO_VALUE, "illegal"),
    ("append", "a", "append_value", lambda op: op.input * 2 if op.f == "append" else NO_VALUE, "ok")])
def test_a_wrong_fast_path_value_is_caught(first: str, read: str, hook: str, wrong: Any,
                                           right_verdict: str) -> None:
    """Mutants: a read fast path that trusts a read's value blindly, an update fast path that
    appends the wrong tail; each changes a verdict."""
    ops = [Op(0, 0, first, "a", None, 0, 1, "ok", key="k"),
           Op(1, 1, "read", None, read, 2, 3, "ok", key="k")]
    model = KVModel(initial="").partition_model("k")
    assert PartitionSearch(ops, model).run(100) == right_verdict
    mutant = type("Mutant", (type(model),), {hook: lambda self, op: wrong(op)})("k", "")
    assert PartitionSearch(ops, mutant).run(100) == ("ok" if right_verdict == "illegal" else "illegal")


def test_touching_ops_are_concurrent_not_replayed() -> None:
    """Two writes meeting at t=1 may take effect in either order: a replay in call order would
    call this legal history ILLEGAL, so it is searched."""
    ops = [Op(0, 0, "write", "a", None, 0, 1, "ok", key="k"),
           Op(1, 1, "write", "b", None, 1, 2, "ok", key="k"),
           Op(2, 2, "read", None, "a", 3, 4, "ok", key="k")]
    model = KVModel(initial="").partition_model("k")
    assert not is_sequential(ops)
    assert SequentialReplay(ops, model).run(10) == "illegal"
    assert check(ops, KVModel(initial="")).verdict is Verdict.OK


def test_an_append_to_a_nil_state_is_stepped() -> None:
    """The append fast path needs a string state: from kv's nil initial value ``step`` decides."""
    ops = [Op(0, 0, "append", 3, None, 0, 1, "ok", key="k"),
           Op(1, 1, "read", None, "3", 2, 3, "ok", key="k")]
    model = KVModel().partition_model("k")
    s = PartitionSearch(ops, model)
    assert s.av[0] == "3" and s.run(100) == "ok"


def test_a_partition_without_crashed_ops_never_rescans_for_them() -> None:
    """Writes of "a" and "b" overlap and a later read returns "a": b must go first. The search
    takes 7 steps: write a, write b, read a (a dead read: both writes are in, undo write b),
    write b's return (dead end: undo write a), write b, write a, read a.
    A rescan of the entry list for indeterminate ops after each backtrack (there are none) adds
    a step per dead end."""
    ops = [Op(0, 0, "write", "a", None, 0, 3, "ok", key="k"),
           Op(1, 1, "write", "b", None, 1, 4, "ok", key="k"),
           Op(2, 2, "read", None, "a", 5, 6, "ok", key="k")]
    s = PartitionSearch(ops, KVModel(initial="").partition_model("k"))
    assert s.run(100) == "ok"
    assert s.steps == 7
    assert [i for i, _ in s.linearization or []] == [1, 0, 2]
