"""No green without chaos: a fault that was not applied, or a check that observed nothing, is an error
verdict, and terminal, report.json, report.html and JUnit all say the same (docs/report-schema.md)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_cbchaos.report.model import validate

HERE = Path(__file__).parent

NEG_LATENCY = """\
name: negative-latency
target: audit_targets:ProxiedCounter
topology: {proxies: [redis], workers: {count: 2}}
workload: {duration_s: 0.6, interval_ms: 2, ops_per_worker: 2000}
faults:
  - {kind: latency, target: redis, at: 0.1, for: 0.3, params: {ms: -150}}
checks:
  - invariant: no-lost-increments
"""

URL_PAUSE = """\
name: url-pause
target: audit_targets:UrlRedisCounter
topology: {workers: {count: 2}}
workload: {duration_s: 0.6, interval_ms: 2, ops_per_worker: 2000}
faults:
  - {kind: pause, target: redis, at: 0.1, for: 0.2}
checks:
  - invariant: no-lost-increments
"""

IDLE = """\
name: idle
target: audit_targets:IdleCounter
topology: {workers: {count: 2}}
workload: {duration_s: 0.3, interval_ms: 2, ops_per_worker: 10}
checks:
  - invariant: no-lost-increments
"""


def _outputs(pytester: pytest.Pytester, result: pytest.RunResult) -> tuple[dict, str, ET.Element]:
    report = json.loads((pytester.path / "rep" / "report.json").read_text())
    validate(report)
    html = (pytester.path / "rep" / "report.html").read_text()
    return report, html, ET.parse(pytester.path / "junit.xml").getroot()


def _test(report: dict, name: str) -> dict:
    return next(t for t in report["tests"] if t["name"] == name)


def _junit_props(junit: ET.Element, name: str) -> dict[str, list[str]]:
    case = next(c for c in junit.iter("testcase") if c.get("name") == name)
    props: dict[str, list[str]] = {}
    for p in case.iter("property"):
        props.setdefault(p.get("name"), []).append(p.get("value"))
    return props


def _html_row(html: str, name: str) -> str:
    return next(r for r in re.findall(r'<tr class="row-[^"]*">.*?</tr>', html) if name in r)


@pytest.fixture
def audit_project(scenario_project: pytest.Pytester) -> pytest.Pytester:
    d = scenario_project.path / "scenarios"
    (d / "audit_targets.py").write_text((HERE / "audit_targets.py").read_text())
    (d / "mutant.yaml").unlink()
    for name, text in (("neg.yaml", NEG_LATENCY), ("urlpause.yaml", URL_PAUSE), ("idle.yaml", IDLE)):
        (d / name).write_text(text)
    return scenario_project


def test_failed_faults_and_empty_observations_are_errors_in_all_four_outputs(audit_project, scn) -> None:
    r = audit_project.runpytest(*scn.PLUGINS, "scenarios", "--cbchaos-report", "rep", "--junitxml", "junit.xml",
                                "-p", "no:cacheprovider")
    r.assert_outcomes(passed=1, failed=3)
    report, html, junit = _outputs(audit_project, r)

    neg = _test(report, "negative-latency")
    assert neg["verdict"] == "error" and neg["outcome"] == "failed"
    assert neg["faults"] == []  # never shown as applied
    assert neg["audit"]["faults_requested"] == 1 and neg["audit"]["faults_applied"] == 0
    assert neg["audit"]["faults_failed"] == 1 and neg["audit"]["ops_observed"] > 0
    assert "1 of 1 requested fault(s) not applied" in neg["verdict_reasons"]
    assert any("latency=-150" in e for e in neg["audit"]["fault_errors"])

    url = _test(report, "url-pause")
    assert url["verdict"] == "error" and url["faults"] == [] and url["audit"]["faults_failed"] == 1
    assert any("not a process the kit started" in e for e in url["audit"]["fault_errors"])
    assert not any("AttributeError" in e for e in url["audit"]["fault_errors"])

    idle = _test(report, "idle")
    assert idle["verdict"] == "error" and idle["audit"]["ops_observed"] == 0
    assert "observed 0 operations: the checks had nothing to check" in idle["verdict_reasons"]

    good = _test(report, "counter-pause")  # the control: a correct run with its fault applied passes
    assert good["verdict"] == "ok" and good["outcome"] == "passed" and good["verdict_reasons"] == []
    assert good["audit"]["faults_applied"] == 1 and good["audit"]["faults_failed"] == 0
    assert good["audit"]["ops_observed"] > 0

    s = report["summary"]
    assert (s["faults_requested"], s["faults_injected"], s["faults_failed"], s["verdict_errors"]) == (3, 1, 2, 3)

    # terminal: the per-test row and the failure text carry the verdict and its reason
    out = r.stdout.str()
    assert re.search(r"negative-latency[\s│]+failed[\s│]+error[\s│]+0/1", out), out
    assert re.search(r"counter-pause[\s│]+passed[\s│]+ok[\s│]+1/1", out), out
    for line in ("*faults requested 3, applied 1, failed 2*", "*ERROR    1 of 1 requested fault(s) not applied*",
                 "*ERROR    observed 0 operations*"):
        r.stdout.fnmatch_lines([line])

    # report.html: same verdicts, no shaded window for a fault that was not applied
    assert "ERROR" in _html_row(html, "negative-latency") and "0/1" in _html_row(html, "negative-latency")
    assert "OK" in _html_row(html, "counter-pause")
    assert html.count('class="fault-band"') == 1  # only counter-pause's pause
    assert "1 of 1 requested fault(s) not applied" in html
    assert 'id="summary-verdict_errors">3<' in html

    # JUnit: the same verdict and audit as properties
    props = _junit_props(junit, "negative-latency")
    assert props["cbchaos_verdict"] == ["error"]
    assert props["cbchaos_faults"] == ["requested=1 applied=0 failed=1"]
    assert "1 of 1 requested fault(s) not applied" in props["cbchaos_verdict_reason"]
    assert _junit_props(junit, "idle")["cbchaos_ops_observed"] == ["0"]
    assert _junit_props(junit, "counter-pause")["cbchaos_verdict"] == ["ok"]


CHECKED = '''
import pytest
from hypothesis import given, settings, strategies as st
from pytest_cbchaos.history.recorder import Recorder
from pytest_cbchaos.linearizability.checker import LinearizabilityViolation, check
from pytest_cbchaos.linearizability.models import get_model


def _run(h, read):
    with h.op(0, "write", 1) as o:
        o.ok()
    with h.op(1, "read", None) as o:
        o.ok(read)


@pytest.mark.linearizable("cas-register", workers=2)
def test_illegal(cbchaos_history):
    _run(cbchaos_history, read=2)


@pytest.mark.linearizable("cas-register", workers=2, timeout=5)
def test_correct(cbchaos_history):
    _run(cbchaos_history, read=1)


@pytest.mark.linearizable("cas-register", workers=2)
def test_no_history():
    pass


@pytest.mark.linearizable("cas-register", workers=2)
def test_zero_ops(cbchaos_history):
    pass


@pytest.mark.linearizable("cas-register", workers=2)
def test_fault_not_applied(cbchaos_history, cbchaos_faults):
    class Proxy:
        name = "redis"
        def add_toxic(self, *a, **k):
            raise AssertionError("never reached")
    with pytest.raises(ValueError, match="toxicity=2.0"):
        cbchaos_faults.latency(Proxy(), ms=10, toxicity=2.0)
    _run(cbchaos_history, read=1)


def test_concurrent_machine():  # what stateful/concurrent.py raises for an ILLEGAL program
    rec = Recorder(2)
    _run(rec, read=2)
    result = check(rec.history(), get_model("cas-register"), mode="report")
    raise LinearizabilityViolation("history is not linearizable", result)


@settings(max_examples=3, database=None, derandomize=True)
@given(st.integers(0, 3))
def test_hypothesis_machine(n):  # the same, raised through Hypothesis (as concurrent_store_test does)
    test_concurrent_machine()


def test_store_machine():  # the sequential store machine against a mutant: the bug class is the check
    from hypothesis import Phase
    from pytest_cbchaos.stateful import store_machine
    from pytest_cbchaos.stateful.survey import check_store
    from pytest_cbchaos.testing.breaker_mutants import AnySuccessClosesStore
    check_store(store_machine(AnySuccessClosesStore), settings=settings(
        max_examples=300, stateful_step_count=50, database=None, derandomize=True,
        phases=[Phase.generate]))  # every setting explicit: an earlier in-process session may have loaded a profile
'''


def test_checked_tests_carry_their_verdict_into_every_output(pytester: pytest.Pytester, scn) -> None:
    pytester.makepyfile(test_checked=CHECKED)
    r = pytester.runpytest(*scn.PLUGINS, "--cbchaos-report", "rep", "--junitxml", "junit.xml", "--strict-markers",
                           f"--cbchaos-artifacts={pytester.path / 'art'}", "-p", "no:cacheprovider")
    r.assert_outcomes(passed=1, failed=7)
    report, html, junit = _outputs(pytester, r)
    expected = {"test_hypothesis_machine": "violated", "test_illegal": "violated", "test_correct": "ok", "test_no_history": "error",
                "test_zero_ops": "error", "test_fault_not_applied": "error", "test_concurrent_machine": "violated",
                "test_store_machine": "violated"}
    for name, verdict in expected.items():
        t = _test(report, name)
        assert t["verdict"] == verdict, (name, t)
        assert _junit_props(junit, name)["cbchaos_verdict"] == [verdict], name
        assert verdict.upper() in _html_row(html, name), name
    rows = [[c.strip() for c in line.split("│")] for line in r.stdout.lines
            if line.startswith("test_checked.py::") and "│" in line]
    assert [row[2] for row in rows] == [t["verdict"] for t in report["tests"]]  # terminal: same verdicts, same order
    assert _test(report, "test_illegal")["checks"][0]["verdict"] == "illegal"
    assert _test(report, "test_illegal")["audit"]["ops_observed"] == 2
    assert report["summary"]["violations"] == 4 and report["summary"]["verdict_errors"] == 3
    store = _test(report, "test_store_machine")["checks"][0]
    assert store["name"] == "store-model:non-owner-closed"
    assert store["detail"].startswith("a non-owner's success closed HALF_OPEN [CB-18]")
    assert "observed 0 operations: the checks had nothing to check" in _test(report, "test_zero_ops")["verdict_reasons"]
    assert "observed 0 operations: the checks had nothing to check" in _test(report, "test_no_history")["verdict_reasons"]
    bad = _test(report, "test_fault_not_applied")
    assert bad["audit"]["faults_failed"] == 1 and bad["faults"] == []
    [run] = list((pytester.path / "art").iterdir())  # <artifacts>/<run id>/<test slug>
    kept = next(p for p in run.iterdir() if "test_fault_not_applied" in p.name)
    results = json.loads((kept / "results.json").read_text())
    assert results["faults"] == [] and results["fault_failures"][0]["kind"] == "toxic:latency"
    for line in ("*needs a recorded history: request the cbchaos_history fixture*",
                 "*observed 0 operations (nothing was checked*", "*1 requested fault(s) were not applied*toxicity=2.0*"):
        r.stdout.fnmatch_lines([line])


UNWRITABLE = '''
import shutil
from pathlib import Path

import pytest

ART = Path({art!r})


@pytest.mark.linearizable("cas-register", workers=2)
def test_illegal(cbchaos_history):
    with cbchaos_history.op(0, "write", 1) as o:
        o.ok()
    with cbchaos_history.op(1, "read", None) as o:
        o.ok(2)
    shutil.rmtree(ART, ignore_errors=True)
    ART.write_text("a file where the artifact directory should be")
'''


def test_an_unwritable_artifact_directory_never_replaces_the_verdict(pytester: pytest.Pytester, scn) -> None:
    art = pytester.path / "art"
    art.mkdir()
    pytester.makepyfile(test_unwritable=UNWRITABLE.format(art=str(art)))
    r = pytester.runpytest(*scn.PLUGINS, "--cbchaos-report", "rep", "--junitxml", "junit.xml",
                           f"--cbchaos-artifacts={art}", "-p", "no:cacheprovider")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*history is not linearizable: ILLEGAL*", "*artifacts not written to*"])
    assert "Traceback" not in r.stdout.str() and "FileNotFoundError" not in r.stdout.str()
    report, _, junit = _outputs(pytester, r)
    assert _test(report, "test_illegal")["verdict"] == "violated"
    assert _junit_props(junit, "test_illegal")["cbchaos_verdict"] == ["violated"]


BLOCKED = """\
name: blocked-artifacts
target: audit_targets:ArtifactsBlocked
topology: {workers: {count: 2}}
workload: {duration_s: 0.3, interval_ms: 2, ops_per_worker: 20}
checks:
  - invariant: always-fails
"""


def test_scenario_artifacts_that_cannot_be_written_keep_the_violation(scenario_project, scn) -> None:
    d = scenario_project.path / "scenarios"
    (d / "audit_targets.py").write_text((HERE / "audit_targets.py").read_text())
    for name in ("mutant.yaml", "good.yaml"):
        (d / name).unlink()
    (d / "blocked.yaml").write_text(BLOCKED)
    r = scenario_project.runpytest(*scn.PLUGINS, "scenarios", "--cbchaos-report", "rep", "--junitxml", "junit.xml",
                                   "--cbchaos-keep=all", "-p", "no:cacheprovider")
    r.assert_outcomes(failed=1)
    assert "Traceback" not in r.stdout.str()
    r.stdout.fnmatch_lines(["*FAIL     invariant:always-fails*", "*artifacts not written to*"])
    report, _, junit = _outputs(scenario_project, r)
    t = _test(report, "blocked-artifacts")
    assert t["verdict"] == "violated" and t["artifacts"] is None and "artifacts not written" in t["artifacts_error"]
    assert _junit_props(junit, "blocked-artifacts")["cbchaos_verdict"] == ["violated"]
