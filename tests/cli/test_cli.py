"""The ``cbchaos`` command: exit codes follow pytest's, malformed scenarios exit 4 with a located message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_cbchaos.cli import doctor_rows, main


def cbchaos(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_cbchaos.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def test_run_malformed_scenario_exits_4_with_located_error(scenario_project: pytest.Pytester) -> None:
    (scenario_project.path / "scenarios" / "broken.yaml").write_text(
        "name: broken\ntarget: sample_targets:CounterTarget\nworkload:\n  duration_s: -1\nchecks:\n  - invariant: x\n")
    res = cbchaos(scenario_project.path, "run", "scenarios")
    assert res.returncode == 4
    assert "broken.yaml:4: workload.duration_s: invalid value; got -1; expected exclusiveMinimum 0" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_run_follows_pytest_exit_codes_and_writes_the_report(scenario_project: pytest.Pytester) -> None:
    ok = cbchaos(scenario_project.path, "run", "scenarios/good.yaml", "--report", "rep", "--seed", "7",
                 "--redis", "fakeredis")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
    assert "counter-pause PASSED" in ok.stdout  # -v progress line per scenario
    report = json.loads((scenario_project.path / "rep" / "report.json").read_text())
    assert report["seed"] == 7 and report["summary"]["passed"] == 1
    bad = cbchaos(scenario_project.path, "run", "scenarios/mutant.yaml", "-q")
    assert bad.returncode == 1 and "no-lost-increments" in bad.stdout
    none = cbchaos(scenario_project.path, "run", "scenarios", "-k", "nothing-matches", "-q")
    assert none.returncode == 5


def test_report_rerenders_html(scenario_project: pytest.Pytester, tmp_path: Path) -> None:
    from pytest_cbchaos.report.model import build_report, make_entry, write_json

    write_json(build_report([make_entry("a::b", "passed", 0.1, None)], seed=3), tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    assert "a::b" in (tmp_path / "report.html").read_text()
    (tmp_path / "report.json").write_text('{"schema": "nope"}')
    assert main(["report", str(tmp_path)]) == 4
    assert main(["report", str(tmp_path / "missing")]) == 4


def test_report_accepts_the_json_path_and_rejects_other_files(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_cbchaos.report.model import build_report, make_entry, write_json

    write_json(build_report([make_entry("a::b", "passed", 0.1, None)], seed=3), tmp_path)
    assert main(["report", str(tmp_path / "report.json")]) == 0
    assert "a::b" in (tmp_path / "report.html").read_text()
    (tmp_path / "notes.txt").write_text("x")
    assert main(["report", str(tmp_path / "notes.txt")]) == 4
    (tmp_path / "bad" / "report.json").mkdir(parents=True)  # a directory where the file should be
    assert main(["report", str(tmp_path / "bad")]) == 4
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "report.json").write_bytes(b"\xff\xfe")
    assert main(["report", str(tmp_path / "bin")]) == 4
    err = capsys.readouterr().err
    assert "notes.txt: not a directory" in err and "cannot read" in err and "not UTF-8" in err
    assert "Traceback" not in err


def test_usage_errors_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 4
    assert main(["run", str(tmp_path / "nope.yaml")]) == 4
    assert main(["frobnicate"]) == 4
    assert main(["run", str(tmp_path), "--redis", "mongodb"]) == 4
    assert "expected one of auto, binary, fakeredis, docker or a URL" in capsys.readouterr().err


def test_doctor_lists_backends_with_hints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "redis-server" in out and "fakeredis" in out and "opencode" in out and "toxiproxy-server" in out
    assert all(hint for comp, status, hint in doctor_rows() if status == "missing")


def test_servers_prints_addresses_and_stops(tmp_path: Path) -> None:
    res = cbchaos(tmp_path, "servers", "--redis", "fakeredis", "--once", timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "redis      fakeredis" in res.stdout and "127.0.0.1:" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["--toxiproxy", "bogus"], "cbchaos: error: --toxiproxy 'bogus': expected one of embedded, binary, docker or a URL"),
    (["--redis", "mongo"], "cbchaos: error: --redis 'mongo': expected one of auto, binary, fakeredis, docker or a URL"),
    (["--toxiproxy", "127.0.0.1:1"], "cbchaos: error: --toxiproxy 127.0.0.1:1: Toxiproxy at http://127.0.0.1:1 "
                                     "does not answer GET /version"),
])
def test_servers_with_an_unusable_backend_exits_4_instead_of_running_on(tmp_path: Path, args: list[str],
                                                                        message: str) -> None:
    res = cbchaos(tmp_path, "servers", "--redis", "fakeredis", *args, timeout=60)  # no --once: must not wait
    assert res.returncode == 4, res.stdout + res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("args, message", [
    (["--report", "/proc/cbchaos-report"], "--cbchaos-report='/proc/cbchaos-report': expected a directory that "
                                           "exists or can be created, and is writable"),
    (["--seed", "-1"], "--cbchaos-seed='-1': expected an integer between 0 and"),
    (["--", "--cbchaos-startup-timeout=nan"], "--cbchaos-startup-timeout='nan': expected a finite number"),
    (["--", "--cbchaos-port-range=20000-20001"], "--cbchaos-port-range='20000-20001': expected a range with at "
                                                 "least 16 ports"),
])
def test_run_options_are_checked_before_any_scenario_runs(scenario_project: pytest.Pytester, args: list[str],
                                                          message: str) -> None:
    res = cbchaos(scenario_project.path, "run", "scenarios/good.yaml", *args)
    assert res.returncode == 4, res.stdout[-2000:] + res.stderr[-2000:]
    assert message in res.stderr and "Traceback" not in res.stdout + res.stderr
    assert "counter-pause" not in res.stdout  # nothing ran


def test_run_rejects_a_nan_duration_instead_of_passing_zero_ops(scenario_project: pytest.Pytester) -> None:
    (scenario_project.path / "scenarios" / "nan.yaml").write_text(
        "name: nan\ntarget: sample_targets:CounterTarget\nworkload:\n  duration_s: .nan\nchecks:\n"
        "  - invariant: no-lost-increments\n")
    res = cbchaos(scenario_project.path, "run", "scenarios/nan.yaml", "--redis", "fakeredis")
    assert res.returncode == 4, res.stdout[-2000:]
    assert "nan.yaml:4: workload.duration_s: not a finite number; got nan; expected a finite number" in res.stderr


def test_doctor_searches_opencode_as_the_plugin_does(tmp_path: Path) -> None:
    fake = tmp_path / "fake-opencode"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    res = cbchaos(tmp_path, "doctor", "--opencode-bin", str(fake), timeout=60)
    assert res.returncode == 0, res.stderr
    assert f"opencode not usable: --opencode-bin='{fake}': opencode found at {fake}, `--version` failed" in res.stdout
    env_run = subprocess.run([sys.executable, "-m", "pytest_cbchaos.cli", "doctor"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, env={**os.environ, "CBCHAOS_OPENCODE_BIN": str(tmp_path / "nope")})
    assert f"opencode not usable: CBCHAOS_OPENCODE_BIN='{tmp_path / 'nope'}': no such file" in env_run.stdout
