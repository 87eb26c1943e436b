"""pytest collects scenario files: -k, markers, located errors with exit 4, mutant fails the run, xdist."""

from __future__ import annotations

import json

import pytest

PLUGINS = ["-p", "pytest_cbchaos.plugin.scenario", "-p", "pytest_cbchaos.plugin.report"]


def test_collect_only_lists_scenarios_with_k(scenario_project: pytest.Pytester) -> None:
    r = scenario_project.runpytest(*PLUGINS, "--collect-only", "-q", "scenarios")
    r.stdout.fnmatch_lines(["scenarios/good.yaml::counter-pause", "scenarios/mutant.yaml::counter-lost-update"])
    r = scenario_project.runpytest(*PLUGINS, "--collect-only", "-q", "scenarios", "-k", "smoke")
    assert "counter-pause" in r.stdout.str() and "counter-lost-update" not in r.stdout.str()
    r = scenario_project.runpytest(*PLUGINS, "--collect-only", "-q", "scenarios", "-k", "pause and not lost")
    assert "counter-pause" in r.stdout.str() and "counter-lost-update" not in r.stdout.str()


def test_scenario_markers_select_with_m(scenario_project: pytest.Pytester) -> None:
    (scenario_project.path / "scenarios" / "marked.yaml").write_text(
        "name: marked\ntarget: sample_targets:CounterTarget\nmarkers: [slow]\nchecks:\n  - invariant: no-lost-increments\n")
    scenario_project.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    r = scenario_project.runpytest(*PLUGINS, "--collect-only", "-q", "scenarios", "-m", "slow", "--strict-markers")
    out = r.stdout.str()
    assert "marked.yaml::marked" in out and "counter-pause" not in out


def test_malformed_scenario_is_located_and_exits_4(scenario_project: pytest.Pytester) -> None:
    (scenario_project.path / "scenarios" / "broken.yaml").write_text(
        "name: broken\ntarget: sample_targets:CounterTarget\nchecks:\n  - invariant: no-lost-increments\n"
        "faults:\n  - {kind: latency, target: redis, strem: up}\n")
    r = scenario_project.runpytest(*PLUGINS, "scenarios")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    out = r.stdout.str()
    assert "broken.yaml:6: faults[0].strem: unknown key" in out
    assert "Traceback" not in out and "loader.py" not in out


def test_passing_scenario_passes_and_mutant_fails_the_run(scenario_project: pytest.Pytester) -> None:
    r = scenario_project.runpytest(*PLUGINS, "scenarios", "-p", "no:cacheprovider")
    r.assert_outcomes(passed=1, failed=1)
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    out = r.stdout.str()
    assert "FAIL     invariant:no-lost-increments" in out and '"lost":' in out
    assert "re-run: cbchaos run" in out


def test_lost_update_is_caught_when_redis_stalls_past_the_short_op_bound(scenario_project: pytest.Pytester,
                                                                          scn) -> None:
    """Redis is paused while the mutant's two overlapping SETs are in flight, longer than the good target's
    0.5 s op bound: the mutant's ops still wait for their replies, so the loss is counted, not excused as
    indeterminate (a client that gave up at 0.5 s would see final 1 within [0, 2] and pass the mutant)."""
    d = scenario_project.path / "scenarios"
    for name in ("good.yaml", "mutant.yaml"):
        (d / name).unlink()
    (d / "stalled.yaml").write_text(scn.STALLED)
    r = scenario_project.runpytest(*scn.PLUGINS, "scenarios", "-p", "no:cacheprovider")
    r.assert_outcomes(failed=1)
    out = r.stdout.str()
    assert "FAIL     invariant:no-lost-increments" in out
    assert "final counter 1 outside [2, 2]" in out, out[-3000:]  # both SETs acknowledged, one increment lost


def test_xdist_aggregates_the_report(scenario_project: pytest.Pytester) -> None:
    r = scenario_project.runpytest_subprocess(*PLUGINS, "scenarios", "-n", "2", "--cbchaos-report", "rep",
                                              "-p", "no:cacheprovider", "--junitxml", "junit.xml")
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((scenario_project.path / "rep" / "report.json").read_text())
    s = report["summary"]
    assert (s["tests"], s["passed"], s["failed"], s["scenarios"], s["violations"]) == (2, 1, 1, 2, 1)
    assert s["faults_injected"] >= 1 and {t["worker"] for t in report["tests"]} <= {"gw0", "gw1"}
    junit = (scenario_project.path / "junit.xml").read_text()
    assert 'name="cbchaos_verdict" value="violated"' in junit and 'name="cbchaos_verdict" value="ok"' in junit
    assert 'name="cbchaos_report"' in junit
    r.stdout.fnmatch_lines(["*cbchaos: 2 tests (2 scenarios)*violations 1*"])


@pytest.mark.parametrize("keep, scenario, kept", [("failed", "good", False), ("all", "good", True),
                                                   ("failed", "mutant", True), ("none", "mutant", False)])
def test_scenario_servers_directory_is_removed_at_session_end(scenario_project: pytest.Pytester, tmp_path,
                                                              monkeypatch: pytest.MonkeyPatch, keep: str,
                                                              scenario: str, kept: bool) -> None:
    """The shared scenario servers' temp directory goes with the session; its logs are kept in the run's
    artifacts when --cbchaos-keep wants them (all, or failed after a failing session), never in the
    system temp directory."""
    import tempfile

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    r = scenario_project.runpytest(*PLUGINS, f"scenarios/{scenario}.yaml", "-p", "no:cacheprovider",
                                   f"--cbchaos-keep={keep}", "--cbchaos-artifacts=art")
    assert r.ret == (0 if scenario == "good" else 1)
    assert list(private.glob("cbchaos-scenario-servers-*")) == []
    logs = list((scenario_project.path / "art").glob("*/scenario-servers-*"))
    assert bool(logs) is kept, logs
    if kept:
        assert any(p.suffix == ".log" for p in logs[0].rglob("*")), list(logs[0].rglob("*"))
