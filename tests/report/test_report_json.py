"""report.json follows the documented schema; ordinary chaos tests are reported too."""

from __future__ import annotations

import json

import jsonschema
import pytest

from pytest_cbchaos.report.html import render_html
from pytest_cbchaos.report.model import build_report, report_schema, make_entry, validate


def test_report_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(report_schema())


def test_scenario_run_writes_a_schema_valid_report(scenario_project: pytest.Pytester, scn) -> None:
    r = scenario_project.runpytest(*scn.PLUGINS, "scenarios", "--cbchaos-report", "rep", "-p", "no:cacheprovider")
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((scenario_project.path / "rep" / "report.json").read_text())
    validate(report)
    assert report["schema"] == "cbchaos-report/1" and report["exitstatus"] == 1
    assert report["summary"]["failed"] == 1 and report["summary"]["passed"] == 1
    failed = report["tests"][0]  # failures sort first
    assert failed["outcome"] == "failed" and failed["verdict"] == "violated"
    assert failed["checks"][0]["counterexample"]["lost"] > 0
    good = report["tests"][1]
    assert good["faults"][0]["kind"] == "pause" and good["faults"][0]["end_ms"] > good["faults"][0]["start_ms"]
    assert good["recoveries"]["first-ok-after-heal"] is not None and good["latencies"]
    assert (scenario_project.path / "rep" / "report.html").exists()


def test_plain_test_with_cbchaos_data_is_reported(pytester: pytest.Pytester, scn) -> None:
    pytester.makepyfile(test_plain="""
        import pytest
        from pytest_cbchaos.report import collect

        @pytest.mark.chaos("latency")
        def test_measured(request):
            collect.add(request, probes=[{"id": "W-HERD", "value": 8, "unit": "calls", "note": "admitted while half-open"}],
                        checks=[{"name": "invariant:X", "kind": "invariant", "verdict": "ok"}])

        def test_untouched():
            pass
    """)
    r = pytester.runpytest(*scn.PLUGINS, "--cbchaos-report", "rep", "-p", "no:cacheprovider")
    r.assert_outcomes(passed=2)
    report = json.loads((pytester.path / "rep" / "report.json").read_text())
    validate(report)
    assert report["probes"][0]["id"] == "W-HERD" and report["probes"][0]["value"] == 8
    entry = next(t for t in report["tests"] if t["name"] == "test_measured")
    assert entry["declared_faults"] == ["latency"] and entry["verdict"] == "ok"
    r.stdout.fnmatch_lines(["*probe W-HERD: 8 calls admitted while half-open*"])


def test_html_escapes_user_values_and_embedded_json() -> None:
    evil = "</script><img src=x onerror=alert(1)>"
    entry = make_entry("t::" + evil, "failed", 0.1, {"kind": "test", "name": evil, "target": None, "faults": [],
                                                     "checks": [{"name": evil, "kind": "invariant", "verdict": "violated",
                                                                 "detail": evil, "counterexample": {"x": evil}}],
                                                     "latencies": [], "transitions": [], "recoveries": {}, "probes": []})
    html = render_html(build_report([entry], seed=1))
    assert "<img src=x" not in html and "</script><img" not in html
    assert html.count("<script") == 2
