"""The breaker-store model and crashed (``info``) ops whose effect depends on when they ran.

A crashed op may have run at any server time after its invoke. These micro histories have a
known answer that hinges on that time; each OK case has an ILLEGAL twin without the crashed op,
so the model's branching cannot pass them by accepting everything.
"""

from __future__ import annotations

from lin_events import ev

from pytest_cbchaos.linearizability import Verdict, check_events
from pytest_cbchaos.breaker.checker_model import Alternatives, BreakerStoreModel

MODEL = BreakerStoreModel()
T = 1_000.0
OPENED = {"prev_state": "closed", "new_state": "open", "applied": True, "now": T}


def failure(rt: float, op_id: str) -> dict:
    return {"op_id": op_id, "failure_threshold": 1, "recovery_timeout": rt}


def verdict(rows: list[tuple]) -> Verdict:
    return check_events(ev(rows), MODEL).verdict


def late_gate_history(with_crashed_gate: bool) -> list[tuple]:
    """The breaker opens with a 1 ms cooldown; a gate invoked inside the cooldown crashes; a later
    failure reports the breaker was half_open, which only the crashed gate, run after the
    cooldown, can explain (the clean-clone CI failure of the 10k-op run had this shape)."""
    rows = [(0, 0, "invoke", "record_failure", {**failure(0.001, "f1"), "now_min": T}, "b"),
            (1, 0, "ok", "record_failure", OPENED, "b")]
    if with_crashed_gate:
        rows += [(2, 1, "invoke", "gate", {"op_id": "g1", "lease_seconds": 30.0, "now_min": T + 0.0005}, "b"),
                 (3, 1, "info", "gate", None, "b")]
    rows += [(4, 2, "invoke", "record_failure", {**failure(600.0, "f2"), "now_min": T + 0.01}, "b"),
             (5, 2, "ok", "record_failure", {"prev_state": "half_open", "new_state": "open", "applied": True,
                                              "now": T + 0.01}, "b")]
    return rows


def test_crashed_gate_that_ran_after_the_cooldown_is_ok() -> None:
    assert verdict(late_gate_history(with_crashed_gate=True)) is Verdict.OK


def test_half_open_without_any_gate_is_illegal() -> None:
    assert verdict(late_gate_history(with_crashed_gate=False)) is Verdict.ILLEGAL


def test_a_crashed_op_that_cannot_explain_it_stays_illegal() -> None:
    """The confirming model re-checks the partition and still finds no linearization: a crashed
    reset, at any time, never makes the breaker half_open."""
    rows = late_gate_history(with_crashed_gate=False)
    rows[2:2] = [(2, 1, "invoke", "reset", {"op_id": "r1", "now_min": T + 0.0005}, "b"),
                 (3, 1, "info", "reset", None, "b")]
    result = check_events(ev(rows), MODEL, mode="report")
    assert result.verdict is Verdict.ILLEGAL
    assert result.counterexample["first_unplaceable"] is not None


def test_fast_model_alone_gives_the_false_violation() -> None:
    """Why the confirmation exists: replayed at its invoke time only, the late gate is illegal."""
    from pytest_cbchaos.linearizability.search import ILLEGAL, PartitionSearch
    from pytest_cbchaos.linearizability.checker import prepare

    parts = prepare(check_events(ev(late_gate_history(with_crashed_gate=True)), MODEL).ops, MODEL)
    assert PartitionSearch(parts["b"], MODEL).run(10_000) == ILLEGAL
    assert PartitionSearch(parts["b"], MODEL.confirm_model).run(10_000) != ILLEGAL


def late_failure_history(gate_sees_cooldown: bool, *, crashed: bool = True) -> list[tuple]:
    """A failure with a 1 ms cooldown crashes; a gate 5 s later still sees the cooldown. Only a
    failure that ran late (near the gate) explains it; run at its invoke it would have ended."""
    rows = [(0, 0, "invoke", "record_failure", {**failure(0.001, "f1"), "now_min": T}, "b")]
    rows.append((1, 0, "info" if crashed else "ok", "record_failure", None if crashed else OPENED, "b"))
    label = {"prev_state": "open", "new_state": "open", "applied": False, "won": False} if gate_sees_cooldown \
        else {"prev_state": "open", "new_state": "half_open", "applied": True, "won": True}
    rows += [(2, 1, "invoke", "gate", {"op_id": "g1", "lease_seconds": 30.0, "now_min": T + 5}, "b"),
             (3, 1, "ok", "gate", {**label, "now": T + 5}, "b")]
    return rows


def test_crashed_failure_that_ran_late_is_ok() -> None:
    assert verdict(late_failure_history(gate_sees_cooldown=True)) is Verdict.OK
    assert verdict(late_failure_history(gate_sees_cooldown=False)) is Verdict.OK


def test_observed_failure_then_cooldown_seen_5s_later_is_illegal() -> None:
    assert verdict(late_failure_history(gate_sees_cooldown=True, crashed=False)) is Verdict.ILLEGAL


def test_alternatives_collapse_once_an_output_decides() -> None:
    ops = check_events(ev(late_gate_history(with_crashed_gate=True)), MODEL).ops
    exact = MODEL.confirm_model
    first, gate, last = sorted(exact.partition(ops)["b"], key=lambda o: o.call)
    ok, s1 = exact.step(exact.init(), first)
    ok2, s2 = exact.step(s1, gate)
    assert ok and ok2 and isinstance(s2, Alternatives) and len(s2) >= 2
    assert "one of" in exact.describe_state(s2)
    ok3, s3 = exact.step(s2, last)
    assert ok3 and not isinstance(s3, Alternatives) and s3.state == "open"


def crashed_failures_history(observed_count: int, crashed: int = 7) -> list[tuple]:
    """A reset, then ``crashed`` record_failure calls (threshold 100: the breaker stays closed) that all
    crash, then a get_state reporting ``observed_count`` failures."""
    rows = [(0, 0, "invoke", "reset", {"op_id": "r0", "now_min": T}, "b"),
            (1, 0, "ok", "reset", {"prev_state": "closed", "new_state": "closed", "applied": True, "now": T}, "b")]
    for i in range(crashed):
        rows.append((2, 10 + i, "invoke", "record_failure",
                     {"op_id": f"f{i}", "failure_threshold": 100, "recovery_timeout": 1.0, "now_min": T + 1}, "b"))
    rows += [(3, 1, "invoke", "get_state", {"op_id": "s0", "now_min": T + 2}, "b"),
             (4, 1, "ok", "get_state", {"state": "closed", "failure_count": observed_count}, "b")]
    rows += [(5, 10 + i, "info", "record_failure", None, "b") for i in range(crashed)]
    return rows


def test_crashed_ops_in_another_order_are_one_configuration() -> None:
    """Crashed ops whose ids no other op names leave records that differ only in the order of those ids
    in ``recent_ops``; kept anonymous, the orders share cache entries, so an impossible count (8 failures
    from 7 calls) is ILLEGAL after the 2^7 subsets instead of the 13,700 ordered ones."""
    result = check_events(ev(crashed_failures_history(8)), MODEL, max_steps=20_000)
    assert result.verdict is Verdict.ILLEGAL, result.partitions
    assert check_events(ev(crashed_failures_history(7)), MODEL).verdict is Verdict.OK
    assert check_events(ev(crashed_failures_history(3)), MODEL).verdict is Verdict.OK


def crashed_resets_history(observed_count: int, crashed: int = 12) -> list[tuple]:
    """One failure (the breaker stays closed), ``crashed`` resets that all crash, then a get_state
    reporting ``observed_count`` failures."""
    rows = [(0, 0, "invoke", "record_failure", {**failure(600.0, "f0"), "failure_threshold": 100, "now_min": T}, "b"),
            (1, 0, "ok", "record_failure", {"prev_state": "closed", "new_state": "closed", "applied": True, "now": T}, "b")]
    rows += [(2, 10 + i, "invoke", "reset", {"op_id": f"r{i}", "now_min": T + 1}, "b") for i in range(crashed)]
    rows += [(3, 1, "invoke", "get_state", {"op_id": "s0", "now_min": T + 2}, "b"),
             (4, 1, "ok", "get_state", {"state": "closed", "failure_count": observed_count}, "b")]
    return rows + [(5, 10 + i, "info", "reset", None, "b") for i in range(crashed)]


def test_crashed_resets_are_tried_in_one_order() -> None:
    """Crashed resets with private ids write the same record whenever they run (``op_class``): only the
    earliest untried one is a candidate, so 12 of them cost 13 configurations, not 2^12."""
    result = check_events(ev(crashed_resets_history(2)), MODEL, max_steps=2_000)
    assert result.verdict is Verdict.ILLEGAL, result.partitions
    assert check_events(ev(crashed_resets_history(0)), MODEL).verdict is Verdict.OK  # a reset ran
    assert check_events(ev(crashed_resets_history(1)), MODEL).verdict is Verdict.OK  # none did
