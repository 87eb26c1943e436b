"""The verdict rules (report/verdict.py): the order of statuses and when the audit makes a run an error."""

from __future__ import annotations

from pytest_cbchaos.report.verdict import Audit, judge, judge_record

OK = {"verdict": "ok"}
BAD = {"verdict": "illegal"}
UNK = {"verdict": "unknown"}


def test_a_clean_audit_leaves_the_checks_verdict() -> None:
    audit = Audit(faults_requested=2, faults_applied=2, ops_observed=10, faults_declared=1)
    assert judge([OK], audit).status == "ok" and judge([OK], audit).reasons == []
    assert judge([OK, UNK], audit).status == "unknown"
    assert judge([], audit).status == "none"
    assert judge([{"verdict": "violated", "enforced": False}], audit).status == "none"  # measure-and-report


def test_each_audit_problem_is_an_error_with_its_reason() -> None:
    cases = {
        "1 of 2 requested fault(s) not applied": Audit(faults_requested=2, faults_applied=1, faults_failed=1, ops_observed=5),
        "fault error: heal pause: boom": Audit(fault_errors=["heal pause: boom"], ops_observed=5),
        "2 fault(s) declared, none applied": Audit(faults_declared=2, ops_observed=5),
        "observed 0 operations: the checks had nothing to check": Audit(ops_observed=0),
    }
    for reason, audit in cases.items():
        v = judge([OK], audit)
        assert (v.status, v.reasons[-1] if v.reasons else None) == ("error", reason), reason
        assert judge([UNK], audit).status == "error"


def test_a_violation_is_never_hidden_by_an_error_but_keeps_its_reasons() -> None:
    v = judge([BAD], Audit(faults_requested=1, faults_failed=1, ops_observed=3))
    assert v.status == "violated" and v.reasons == ["1 of 1 requested fault(s) not applied"]


def test_zero_ops_without_enforced_checks_and_uncounted_ops_are_not_errors() -> None:
    assert judge([], Audit(ops_observed=0)).status == "none"
    assert judge([OK], Audit(ops_observed=None)).status == "ok"


def test_a_record_run_error_is_a_reason() -> None:
    v = judge_record({"checks": [OK], "audit": Audit(ops_observed=3).to_dict(), "error": "workload raised X"})
    assert v.status == "error" and v.reasons == ["run error: workload raised X"]
    assert v.fields()["audit"]["ops_observed"] == 3
