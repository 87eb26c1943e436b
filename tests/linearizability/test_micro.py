"""Hand-written micro histories with known answers (docs/linearizability-design.md#jepsen-logs) and checker
semantics."""

from __future__ import annotations

import pytest
from lin_events import ev

from pytest_cbchaos.history import MalformedHistory
from pytest_cbchaos.linearizability import (CasRegisterModel, KVModel, Model, NondeterministicModel,
                                            RegisterModel, Verdict, check, check_events, compose)

REG = RegisterModel()
CAS = CasRegisterModel()


def verdict(rows, model=CAS, **kw):
    return check_events(ev(rows), model, **kw).verdict


def test_stale_read_after_write_is_illegal() -> None:
    rows = [(0, 0, "invoke", "write", 1), (1, 0, "ok", "write", None),
            (2, 1, "invoke", "read", None), (3, 1, "ok", "read", 2),
            (4, 0, "invoke", "write", 2), (5, 0, "ok", "write", None)]
    assert verdict(rows, REG) is Verdict.ILLEGAL


def test_read_overlapping_the_write_is_ok() -> None:
    rows = [(0, 0, "invoke", "write", 1), (1, 0, "ok", "write", None),
            (2, 1, "invoke", "read", None), (4, 0, "invoke", "write", 2),
            (5, 1, "ok", "read", 2), (6, 0, "ok", "write", None)]
    assert verdict(rows, REG) is Verdict.OK


def test_closed_intervals_touching_are_concurrent() -> None:
    # read returns 2 at t=10 exactly when write(2) is invoked at t=10
    rows = [(0, 0, "invoke", "write", 1), (1, 0, "ok", "write", None),
            (2, 1, "invoke", "read", None), (10, 0, "invoke", "write", 2),
            (10, 1, "ok", "read", 2), (12, 0, "ok", "write", None)]
    assert verdict(rows, REG) is Verdict.OK


def test_crashed_write_that_took_effect() -> None:
    rows = [(0, 0, "invoke", "write", 3), (1, 1, "invoke", "read", None),
            (2, 1, "ok", "read", 3), (3, 0, "info", "write", None)]
    assert verdict(rows) is Verdict.OK


def test_crashed_write_that_never_happened() -> None:
    rows = [(0, 0, "invoke", "write", 1), (1, 0, "ok", "write", None),
            (2, 0, "invoke", "write", 3), (3, 0, "info", "write", None),
            (4, 1, "invoke", "read", None), (5, 1, "ok", "read", 1),
            (6, 2, "invoke", "read", None), (7, 2, "ok", "read", 1)]
    assert verdict(rows) is Verdict.OK


def test_pending_invoke_at_end_is_info() -> None:
    rows = [(0, 0, "invoke", "write", 3), (1, 1, "invoke", "read", None), (2, 1, "ok", "read", 3)]
    assert verdict(rows) is Verdict.OK


def test_failed_cas_whose_compare_matched_is_illegal() -> None:
    rows = [(0, 0, "invoke", "write", 1), (1, 0, "ok", "write", None),
            (2, 0, "invoke", "cas", [1, 2]), (3, 0, "ok", "cas", False)]
    assert verdict(rows) is Verdict.ILLEGAL


def test_nil_read_after_write_is_illegal_for_cas_register() -> None:
    rows = [(0, 0, "invoke", "write", 1), (1, 0, "ok", "write", None),
            (2, 0, "invoke", "read", None), (3, 0, "ok", "read", None)]
    assert verdict(rows) is Verdict.ILLEGAL


def test_fail_ops_are_dropped() -> None:
    rows = [(0, 0, "invoke", "write", 5), (1, 0, "fail", "write", None),
            (2, 1, "invoke", "read", None), (3, 1, "ok", "read", None)]
    assert verdict(rows) is Verdict.OK


def test_crashed_reads_are_converted_and_process_retired() -> None:
    rows = [(0, 0, "invoke", "read", None), (1, 0, "info", "read", None),
            (2, 5, "invoke", "write", 1), (3, 5, "ok", "write", None)]
    r = check_events(ev(rows), CAS)
    assert r.verdict is Verdict.OK
    assert [op.status for op in r.ops] == ["fail", "ok"]


@pytest.mark.parametrize("rows,msg", [
    ([(0, 0, "invoke", "read", None), (1, 0, "invoke", "read", None)], "still pending"),
    ([(0, 0, "ok", "read", 1)], "without a pending invoke"),
    ([(0, 0, "invoke", "read", None), (1, 0, "ok", "write", 1)], "does not match"),
    ([(0, 0, "invoke", "write", 1), (1, 0, "info", "write", None),
      (2, 0, "invoke", "read", None)], "retired"),
    ([(5, 0, "invoke", "read", None), (1, 0, "ok", "read", None)], "backwards"),
    ([(0, -1, "invoke", "read", None)], "'process'"),
])
def test_malformed_histories_raise_before_search(rows, msg) -> None:
    with pytest.raises(MalformedHistory, match=msg):
        check_events(ev(rows), CAS)


def test_kv_partitions_and_composes() -> None:
    rows = [(0, 0, "invoke", "write", 1, "a"), (1, 0, "ok", "write", None, "a"),
            (2, 1, "invoke", "write", 7, "b"), (3, 1, "ok", "write", None, "b"),
            (4, 0, "invoke", "read", None, "a"), (5, 0, "ok", "read", 1, "a"),
            (6, 1, "invoke", "read", None, "b"), (7, 1, "ok", "read", 1, "b")]
    r = check_events(ev(rows), KVModel(), mode="report")
    assert r.verdict is Verdict.ILLEGAL
    assert r.partitions["a"].verdict is Verdict.OK
    assert r.partitions["b"].verdict is Verdict.ILLEGAL
    # the KV model is also right without partitioning
    class Flat(KVModel):
        def partition(self, ops):
            return {None: list(ops)}
    assert check_events(ev(rows), Flat()).verdict is Verdict.ILLEGAL
    assert check_events(ev(rows[:6]), Flat()).verdict is Verdict.OK


def test_compose_priorities() -> None:
    assert compose([]) is Verdict.OK
    assert compose(["ok", "unknown"]) is Verdict.UNKNOWN
    assert compose(["unknown", "illegal", "ok"]) is Verdict.ILLEGAL
    assert Verdict.UNKNOWN.jepsen == ":unknown"


def test_step_budget_gives_unknown() -> None:
    rows = []
    for p in range(12):
        rows.append((0, p, "invoke", "write", p))
    for p in range(12):
        rows.append((1, p, "ok", "write", None))
    for p in range(12):
        rows.append((2 + p, 100 + p, "invoke", "read", None))
        rows.append((2 + p, 100 + p, "ok", "read", -1))
    events = [dict(e, index=i) for i, e in enumerate(ev(rows))]
    r = check_events(events, REG, max_steps=2000, fast_path=False)  # the search's budget
    assert r.verdict is Verdict.UNKNOWN
    assert r.budget_exhausted
    p = next(iter(r.partitions.values()))
    assert p.reason == "max_steps"
    # with enough budget it is decided
    assert check_events(events, REG).verdict is Verdict.ILLEGAL


def test_timeout_gives_unknown() -> None:
    rows = []
    for p in range(18):
        rows.append((0, p, "invoke", "write", p))
    for p in range(18):
        rows.append((1, p, "ok", "write", None))
    rows.append((2, 50, "invoke", "read", None))
    rows.append((3, 50, "ok", "read", -1))
    r = check_events(ev(rows), REG, timeout=0.05)
    assert r.verdict in (Verdict.UNKNOWN, Verdict.ILLEGAL)
    if r.verdict is Verdict.UNKNOWN:
        assert next(iter(r.partitions.values())).reason == "timeout"


def test_cache_cap_gives_unknown() -> None:
    rows = [(0, p, "invoke", "write", p) for p in range(10)]
    rows += [(1, p, "ok", "write", None) for p in range(10)]
    rows += [(2, 50, "invoke", "read", None), (3, 50, "ok", "read", -1)]
    r = check_events(ev(rows), REG, max_cache_entries=50, fast_path=False)
    assert r.verdict is Verdict.UNKNOWN
    assert next(iter(r.partitions.values())).reason == "max_cache_entries"


def test_counterexample_has_prefix_unplaceable_attempts_and_window() -> None:
    rows = [(0, 0, "invoke", "write", 1), (1, 0, "ok", "write", None),
            (2, 1, "invoke", "read", None), (3, 1, "ok", "read", 1),
            (4, 0, "invoke", "write", 2), (5, 0, "ok", "write", None),
            (6, 1, "invoke", "read", None), (7, 1, "ok", "read", 1),
            (8, 0, "invoke", "write", 3), (9, 0, "ok", "write", None)]
    r = check_events(ev(rows), REG, mode="report")
    assert r.verdict is Verdict.ILLEGAL
    cx = r.counterexample
    assert [p["describe"] for p in cx["longest_prefix"]] == [
        "write(1) -> nil", "read() -> 1", "write(2) -> nil"]
    assert [p["state_after"] for p in cx["longest_prefix"]] == ["1", "1", "2"]
    assert cx["first_unplaceable"]["describe"] == "read() -> 1"
    assert cx["first_unplaceable"]["state"] == "2"
    assert cx["first_unplaceable"]["index"] == 6
    assert cx["attempts"] and "register holds 2" in cx["attempts"][0]["explain"]
    # the shortest illegal time-prefix ends at the stale read's return
    assert cx["minimal_window"]["cut_ns"] == 7
    assert 8 not in cx["minimal_window"]["ops"]


def test_linearization_returned_for_ok_history() -> None:
    rows = [(0, 0, "invoke", "write", 1), (0, 1, "invoke", "write", 2),
            (1, 0, "ok", "write", None), (1, 1, "ok", "write", None),
            (2, 0, "invoke", "read", None), (3, 0, "ok", "read", 1)]
    r = check_events(ev(rows), REG)
    lin = next(iter(r.partitions.values())).linearization
    ops = next(iter(r.partitions.values())).partition_ops
    assert [(ops[i].f, ops[i].input) for i in lin] == [("write", 2), ("write", 1), ("read", None)]


class _Custom(RegisterModel):
    """Custom equality/hash: states are lists wrapped in a tuple-less form."""

    custom_equality = True

    def init(self):
        return [None]

    def step(self, state, op):
        ok, ns = super().step(state[0], op)
        return ok, [ns]

    def equal(self, a, b):
        return a == b

    def hash(self, s):
        return hash(s[0])


def test_custom_equality_model_uses_buckets() -> None:
    rows = [(0, 0, "invoke", "write", 1), (1, 0, "ok", "write", None),
            (2, 1, "invoke", "read", None), (3, 1, "ok", "read", 2)]
    assert verdict(rows, _Custom()) is Verdict.ILLEGAL
    assert verdict(rows[:2], _Custom()) is Verdict.OK


class _MaybeIncr(NondeterministicModel):
    """incr may or may not take effect (a lossy counter); reads must see a possible value."""

    name = "maybe-incr"

    def init_states(self):
        return [0]

    def step_all(self, s, op):
        if op.f == "incr":
            return [s, s + 1]
        if op.f == "read":
            return [s] if op.unknown or op.output == s else []
        return []


def test_nondeterministic_model_power_set() -> None:
    m = _MaybeIncr().to_model()
    rows = [(0, 0, "invoke", "incr", None), (1, 0, "ok", "incr", None),
            (2, 0, "invoke", "incr", None), (3, 0, "ok", "incr", None),
            (4, 1, "invoke", "read", None), (5, 1, "ok", "read", 1)]
    assert verdict(rows, m) is Verdict.OK
    rows[-1] = (5, 1, "ok", "read", 3)
    assert verdict(rows, m) is Verdict.ILLEGAL


def test_user_model_protocol_without_base_class() -> None:
    class Toggle:
        name = "toggle"
        def init(self):
            return False
        def step(self, s, op):
            if op.f == "flip":
                return True, not s
            return (op.unknown or op.output == s), s
        def partition(self, ops):
            return {None: list(ops)}
        def read_only(self, f):
            return f == "get"
        def describe_op(self, op):
            return op.f
        def describe_state(self, s):
            return str(s)
        def explain(self, s, op):
            return "no"
    rows = [(0, 0, "invoke", "flip", None), (1, 0, "ok", "flip", None),
            (2, 0, "invoke", "get", None), (3, 0, "ok", "get", False)]
    assert verdict(rows, Toggle()) is Verdict.ILLEGAL
    assert check_events(ev(rows), Toggle(), mode="report").counterexample is not None


def test_mode_validation() -> None:
    with pytest.raises(ValueError, match="mode"):
        check([], REG, mode="bogus")


def test_crashed_ops_that_change_nothing_are_not_tried() -> None:
    """An indeterminate op that leaves the state as it is never helps a linearization (it has no return
    to meet), so it is not tried: 16 crashed CAS ops whose compare never matches cost no 2^16 subsets
    before the stale read is judged (docs/linearizability-design.md#search)."""
    rows = [(0, 0, "invoke", "write", 1), (1, 0, "ok", "write", None)]
    rows += [(2, 10 + i, "invoke", "cas", [100 + i, 200 + i]) for i in range(16)]
    rows += [(3, 50, "invoke", "read", None), (4, 50, "ok", "read", 2)]
    rows += [(5, 10 + i, "info", "cas", None) for i in range(16)]
    r = check_events(ev(rows), CAS, max_steps=5_000, fast_path=False)
    assert r.verdict is Verdict.ILLEGAL, r.partitions
    assert next(iter(r.partitions.values())).steps < 1_000
    # a crashed CAS that does match is still tried: it makes the read legal
    rows[2] = (2, 10, "invoke", "cas", [1, 2])
    assert check_events(ev(rows), CAS, max_steps=5_000, fast_path=False).verdict is Verdict.OK
