"""The verdict of one test or scenario: computed once from its checks and its audit, rendered by all outputs.

The audit says what the run really did: faults requested / applied / failed and operations observed.
A run whose fault was not applied, or whose checks observed nothing, cannot pass: its verdict is
``error`` with the reasons (docs/report-schema.md, "Verdict and audit"). Terminal, report.json,
report.html and JUnit only render the fields written here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("ok", "violated", "unknown", "none", "error")
BAD_CHECK = ("violated", "illegal")


@dataclass(frozen=True)
class Audit:
    """What a run did. ``ops_observed`` None: the test does not count operations (nothing to audit)."""

    faults_requested: int = 0
    faults_applied: int = 0
    faults_failed: int = 0
    ops_observed: int | None = None
    faults_declared: int = 0  # faults a scenario plans; 0 for plain tests
    fault_errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Audit":
        data = data or {}
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class RunVerdict:
    """A run's verdict: status, the reasons and the audit (checkers' own verdicts are
    ``linearizability.Verdict``)."""

    status: str
    reasons: list[str]
    audit: Audit

    def fields(self) -> dict[str, Any]:
        """The record fields every output reads: ``verdict``, ``verdict_reasons``, ``audit``."""
        return {"verdict": self.status, "verdict_reasons": list(self.reasons), "audit": self.audit.to_dict()}


def audit_reasons(audit: Audit, enforced_checks: int) -> list[str]:
    """Why a run cannot pass, however its checks came out."""
    reasons: list[str] = []
    if audit.faults_failed:
        reasons.append(f"{audit.faults_failed} of {audit.faults_requested} requested fault(s) not applied")
    reasons.extend(f"fault error: {e}" for e in audit.fault_errors[:5])
    if audit.faults_declared and not audit.faults_applied:
        reasons.append(f"{audit.faults_declared} fault(s) declared, none applied")
    if audit.ops_observed == 0 and enforced_checks:
        reasons.append("observed 0 operations: the checks had nothing to check")
    return reasons


def judge(checks: list[dict[str, Any]], audit: Audit, errors: list[str] | None = None) -> RunVerdict:
    """violated > error > unknown > ok > none. A violation is a finding whatever else went wrong;
    ``errors`` (e.g. a workload that raised) and audit problems make the run an error."""
    enforced = [c.get("verdict") for c in checks if c.get("enforced", True) and c.get("verdict") != "skipped"]
    reasons = [*(errors or []), *audit_reasons(audit, len(enforced))]
    if any(v in BAD_CHECK for v in enforced):
        status = "violated"
    elif reasons:
        status = "error"
    elif "unknown" in enforced:
        status = "unknown"
    else:
        status = "ok" if enforced else "none"
    return RunVerdict(status, reasons, audit)


def judge_record(record: dict[str, Any]) -> RunVerdict:
    """The verdict of a report record (its ``checks``, ``audit`` and run ``error``)."""
    errors = [f"run error: {record['error']}"] if record.get("error") else []
    return judge(record.get("checks", []), Audit.from_dict(record.get("audit")), errors)


Verdict = RunVerdict  # deprecated name of RunVerdict
