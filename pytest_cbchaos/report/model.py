"""Aggregate per-test records into the report.json document (schema: docs/report-schema.md)."""

from __future__ import annotations

import datetime as _dt
import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_cbchaos.report.collect import verdict_fields
from pytest_cbchaos.report.explain import headline

SCHEMA_ID = "cbchaos-report/1"
OUTCOMES = ("passed", "failed", "skipped", "error")


@functools.cache
def report_schema() -> dict[str, Any]:
    return json.loads(resources.files("pytest_cbchaos.report").joinpath("report.schema.json").read_text("utf-8"))


def make_entry(nodeid: str, outcome: str, duration_s: float, record: dict[str, Any] | None,
               longrepr: str | None = None, skip_reason: str | None = None, worker: str = "master") -> dict[str, Any]:
    rec = dict(record or {"kind": "test", "name": nodeid.rsplit("::", 1)[-1], "target": None, "faults": [],
                          "checks": [], "latencies": [], "transitions": [], "recoveries": {}, "probes": []})
    rec.update(nodeid=nodeid, outcome=outcome, duration_s=round(duration_s, 4), worker=worker,
               skip_reason=skip_reason, longrepr=(longrepr or None) and longrepr[-4000:])
    rec.update(verdict_fields(rec))
    rec["headline"] = headline(rec)
    for key, default in (("faults", []), ("checks", []), ("latencies", []), ("transitions", []),
                         ("recoveries", {}), ("probes", []), ("target", None), ("kind", "test")):
        rec.setdefault(key, default)
    return rec


def build_report(entries: list[dict[str, Any]], *, seed: int | None, command: str = "",
                 backends: dict[str, Any] | None = None, workers: dict[str, Any] | None = None,
                 exitstatus: int | None = None, background_load: dict[str, Any] | None = None,
                 run_id: str | None = None) -> dict[str, Any]:
    tests = sorted(entries, key=lambda e: (e["outcome"] not in ("failed", "error"), e["nodeid"]))
    counts = {o: sum(1 for t in tests if t["outcome"] == o) for o in OUTCOMES}
    checks = [c for t in tests for c in t["checks"] if c.get("verdict") != "skipped"]
    probes = [dict(p, nodeid=t["nodeid"]) for t in tests for p in t.get("probes", [])]
    audits = [t["audit"] for t in tests]
    summary = {
        "tests": len(tests), **counts,
        "scenarios": sum(1 for t in tests if t.get("kind") == "scenario"),
        "faults_requested": sum(a.get("faults_requested", 0) for a in audits),
        "faults_injected": sum(a.get("faults_applied", 0) for a in audits),
        "faults_failed": sum(a.get("faults_failed", 0) for a in audits),
        "checks_run": len(checks),
        "violations": sum(1 for c in checks if c.get("verdict") in ("violated", "illegal")),
        "unknown": sum(1 for c in checks if c.get("verdict") == "unknown"),
        "verdict_errors": sum(1 for t in tests if t["verdict"] == "error"),
    }
    return {
        "schema": SCHEMA_ID,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run_id": run_id, "seed": seed, "command": command, "exitstatus": exitstatus,
        "backends": backends or {}, "workers": workers or {},
        "background_load": background_load or {"workers": 0, "cpu_s": 0.0},
        "summary": summary, "probes": probes, "tests": tests,
    }


def write_json(report: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.json"
    path.write_text(json.dumps(report, indent=1, sort_keys=True, default=str), encoding="utf-8")
    return path


def validate(report: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``report`` does not follow the documented schema."""
    import jsonschema

    jsonschema.Draft202012Validator(report_schema()).validate(report)
