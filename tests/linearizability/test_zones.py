"""The register fast path (zones.py) against the general search, and the history it exists for
(docs/linearizability-design.md#register-fast-path)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pytest_cbchaos.history.ops import INF, Op
from pytest_cbchaos.linearizability import CasRegisterModel, RegisterModel, Verdict, check
from pytest_cbchaos.linearizability.models import KVModel
from pytest_cbchaos.linearizability.zones import decide
from pytest_cbchaos.testing.register_histories import register_history


@st.composite
def distinct_write_histories(draw: Any) -> list[Op]:
    """Small windows on a short clock (many ties), crashed writes, and reads of written,
    initial and never-written values."""
    n = draw(st.integers(1, 8))
    ops: list[Op] = []
    written = 0
    for i in range(n):
        call = draw(st.integers(0, 12))
        ret = call + draw(st.integers(0, 5))
        if draw(st.booleans()):
            written += 1
            crashed = draw(st.integers(0, 5)) == 0
            ops.append(Op(i, i, "write", written, None, call, INF if crashed else ret,
                          "info" if crashed else "ok", invoke_index=i))
        else:
            value = draw(st.sampled_from([None, *range(1, written + 2)]))
            ops.append(Op(i, i, "read", None, value, call, ret, "ok", invoke_index=i))
    return ops


@given(distinct_write_histories())
def test_fast_path_and_search_agree(ops: list[Op]) -> None:
    fast = check(ops, RegisterModel(), timeout=None)
    searched = check(ops, RegisterModel(), timeout=None, fast_path=False)
    assert all(p.reason.startswith("decided by zones") for p in fast.partitions.values())
    assert fast.verdict == searched.verdict, ops


def test_agreement_covers_both_verdicts() -> None:
    """The property above is only worth something if both verdicts occur among its inputs."""
    legal = [Op(0, 0, "write", 1, None, 0, 2, "ok"), Op(1, 1, "read", None, 1, 3, 4, "ok")]
    stale = [Op(0, 0, "write", 1, None, 0, 1, "ok"), Op(1, 1, "write", 2, None, 2, 3, "ok"),
             Op(2, 2, "read", None, 1, 4, 5, "ok")]
    for ops, verdict in ((legal, Verdict.OK), (stale, Verdict.ILLEGAL)):
        assert check(ops, RegisterModel()).verdict is verdict
        assert check(ops, RegisterModel(), fast_path=False).verdict is verdict


def test_ten_thousand_ops_sixteen_clients_one_stale_read_is_illegal() -> None:
    history = register_history(10_000, 16, seed=7, stale_read=True)
    result = check(history, RegisterModel(), timeout=60, mode="report")
    assert result.verdict is Verdict.ILLEGAL
    (part,) = result.partitions.values()
    assert part.reason.startswith("decided by zones")
    first = result.counterexample["first_unplaceable"]
    assert first is not None and first["describe"].startswith("read()")
    assert result.counterexample["minimal_window"]["ops"]


def test_generated_legal_history_is_ok() -> None:
    assert check(register_history(2_000, 16, seed=7), RegisterModel()).verdict is Verdict.OK


def test_touching_windows_are_concurrent() -> None:
    """Closed intervals: a read whose call equals the overwriting write's return may still
    read the old value."""
    ops = [Op(0, 0, "write", 1, None, 0, 1, "ok"), Op(1, 1, "write", 2, None, 2, 3, "ok"),
           Op(2, 2, "read", None, 1, 3, 4, "ok")]
    assert check(ops, RegisterModel()).verdict is Verdict.OK
    assert check(ops, RegisterModel(), fast_path=False).verdict is Verdict.OK


def test_cases_the_fast_path_leaves_to_the_search() -> None:
    twice = [Op(0, 0, "write", 1, None, 0, 1, "ok"), Op(1, 1, "write", 1, None, 2, 3, "ok")]
    initial_again = [Op(0, 0, "write", None, None, 0, 1, "ok")]
    with_cas = [Op(0, 0, "cas", [None, 1], True, 0, 1, "ok")]
    floats = [Op(0, 0, "write", 1.5, None, 0, 1, "ok")]
    with_append = [Op(0, 0, "write", 1, None, 0, 1, "ok"), Op(1, 0, "append", "a", None, 2, 3, "ok")]
    for ops in (twice, initial_again, with_cas, floats, with_append):
        assert decide(ops) is None


def test_models_with_register_semantics_use_it_and_variants_do_not() -> None:
    ops = [Op(0, 0, "write", 1, None, 0, 1, "ok", key="k"), Op(1, 1, "read", None, 1, 2, 3, "ok", key="k")]
    for model in (RegisterModel(), CasRegisterModel(), KVModel()):
        assert all(p.reason == "decided by zones" for p in check(ops, model).partitions.values())

    class StuckRegister(RegisterModel):
        """A variant with its own ``step``: it must be judged by that step."""

        def step(self, state: Any, op: Op) -> tuple[bool, Any]:
            return (True, state) if op.f == "write" else (op.output == state, state)

    result = check(ops, StuckRegister())
    assert result.verdict is Verdict.ILLEGAL
    assert not any(p.reason.startswith("decided by zones") for p in result.partitions.values())


def test_timeout_bounds_the_counterexample_too(counterexample_deadlines: list[float | None]) -> None:
    """The check's deadline is the counterexample's deadline (it used to get a budget of its own
    on top). A frozen clock makes the deadline a known number."""
    history = register_history(2_000, 16, seed=7, stale_read=True)
    result = check(history, RegisterModel(), timeout=5.0, mode="report")
    assert result.verdict is Verdict.ILLEGAL
    assert counterexample_deadlines == [105.0]


def test_kv_append_concatenates_and_judges_reads() -> None:
    """``append`` (Porcupine's kv): nil reads as empty; a read must see every append before it."""
    ops = [Op(0, 0, "append", "a", None, 0, 1, "ok", key="k"),
           Op(1, 1, "append", "b", None, 2, 3, "ok", key="k"),
           Op(2, 2, "read", None, "ab", 4, 5, "ok", key="k")]
    assert check(ops, KVModel()).verdict is Verdict.OK
    lost = ops[:2] + [Op(2, 2, "read", None, "b", 4, 5, "ok", key="k")]
    assert check(lost, KVModel()).verdict is Verdict.ILLEGAL
    concurrent = [Op(0, 0, "append", "a", None, 0, 3, "ok", key="k"),
                  Op(1, 1, "append", "b", None, 0, 3, "ok", key="k"),
                  Op(2, 2, "read", None, "ba", 4, 5, "ok", key="k")]
    assert check(concurrent, KVModel()).verdict is Verdict.OK


def test_kv_append_of_a_non_string_is_an_input_error() -> None:
    from pytest_cbchaos.history.ops import MalformedHistory
    import pytest

    with pytest.raises(MalformedHistory, match="append value"):
        check([Op(0, 0, "append", ["x"], None, 0, 1, "ok", key="k")], KVModel())
