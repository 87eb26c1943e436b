"""Scenario fault ``cpu_stress`` on target ``host``: validated where it stands, applied as a window,
and a burner that cannot start is a failed fault in the verdict audit (docs/scenarios.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_cbchaos.faults import cpu
from pytest_cbchaos.report.model import validate
from pytest_cbchaos.scenario.errors import ScenarioError
from pytest_cbchaos.scenario.loader import load_scenario

HERE = Path(__file__).parent
BASE = "name: s1\ntarget: sample_targets:CounterTarget\nchecks:\n  - invariant: no-lost-increments\nfaults:\n"


def _load(tmp_path: Path, fault: str):
    (tmp_path / "sample_targets.py").write_text((HERE / "sample_targets.py").read_text())
    p = tmp_path / "x.scenario.yaml"
    p.write_text(BASE + fault)
    return load_scenario(p)


def test_cpu_stress_loads_with_its_params(tmp_path: Path) -> None:
    s = _load(tmp_path, "  - {kind: cpu_stress, target: host, at: 0.1, for: 0.5, params: {workers: 4, for_s: 0.4}}\n")
    [f] = s.faults
    assert (f.kind, f.family, f.target, f.params) == ("cpu_stress", "host", "host", {"workers": 4, "for_s": 0.4})


@pytest.mark.parametrize("params, key, value, expected", [
    ("{workers: 0}", "faults[0].params.workers", 0, "an integer between 1 and 64"),
    ("{workers: 65}", "faults[0].params.workers", 65, "an integer between 1 and 64"),
    ("{workers: 2.5}", "faults[0].params.workers", 2.5, "an integer between 1 and 64"),
    ("{workers: .nan}", "faults[0].params.workers", "nan", "a finite number"),  # the loader's NaN/inf pass
    ("{for_s: .nan}", "faults[0].params.for_s", "nan", "a finite number"),
    ("{for_s: .inf}", "faults[0].params.for_s", "inf", "a finite number"),
    ("{for_s: -1}", "faults[0].params.for_s", -1, "a finite number of seconds > 0"),
    ("{for_s: fast}", "faults[0].params.for_s", "fast", "a finite number of seconds > 0"),
    ("{cores: 2}", "faults[0].params.cores", "cores", "params workers, for_s"),
])
def test_bad_params_are_located(tmp_path: Path, params: str, key: str, value: object, expected: str) -> None:
    with pytest.raises(ScenarioError) as info:
        _load(tmp_path, f"  - kind: cpu_stress\n    target: host\n    params: {params}\n")
    e = info.value
    assert (e.line, e.key) == (8, key) and expected in str(e)
    assert str(value) == str(e.value)
    assert str(e).startswith(f"{tmp_path / 'x.scenario.yaml'}:8: {key}: ")


def test_the_only_target_is_host(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r":7: faults\[0\]\.target: no such host target .* expected one of host"):
        _load(tmp_path, "  - kind: cpu_stress\n    target: redis\n")


STRESS = """\
name: counter-under-cpu-stress
target: sample_targets:CounterTarget
topology: {workers: {count: 2}}
workload: {duration_s: 1.0, interval_ms: 2, ops_per_worker: 5000}
faults:
  - {kind: cpu_stress, target: host, at: 0.1, for: 0.5, params: {workers: 2}}
checks:
  - invariant: no-lost-increments
"""


def _run(pytester: pytest.Pytester, scn) -> dict:
    d = pytester.mkdir("scenarios")
    (d / "sample_targets.py").write_text((HERE / "sample_targets.py").read_text())
    (d / "stress.yaml").write_text(STRESS)
    pytester.runpytest(*scn.PLUGINS, "scenarios", "--cbchaos-report", "rep", "-p", "no:cacheprovider")
    report = json.loads((pytester.path / "rep" / "report.json").read_text())
    validate(report)
    return report["tests"][0]


def test_cpu_stress_is_a_window_in_the_report(pytester: pytest.Pytester, scn) -> None:
    t = _run(pytester, scn)
    assert t["outcome"] == "passed" and t["verdict"] == "ok", t
    [f] = t["faults"]
    assert (f["kind"], f["target"], f["params"]["workers"], len(f["params"]["pids"])) == ("cpu_stress", "host", 2, 2)
    assert 400 <= f["end_ms"] - f["start_ms"]
    assert t["audit"]["faults_applied"] == 1 and t["audit"]["faults_failed"] == 0


def test_a_cpu_stress_that_failed_to_start_counts_as_failed(pytester: pytest.Pytester, scn,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    crash = pytester.path / "crash.py"
    crash.write_text("import sys; sys.exit(3)\n")
    monkeypatch.setattr(cpu, "BURNER", crash)
    t = _run(pytester, scn)
    assert t["verdict"] == "error" and t["faults"] == []
    assert (t["audit"]["faults_requested"], t["audit"]["faults_applied"], t["audit"]["faults_failed"]) == (1, 0, 1)
    # the start itself or the readiness wait sees the exit first: "... before it was ready" / "... before burning"
    assert any("exited with code 3 before" in e for e in t["audit"]["fault_errors"]), t["audit"]["fault_errors"]
