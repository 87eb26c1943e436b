"""``--cbchaos-background-load=N``: burners for the whole session, in the main process only, reported,
and gone when pytest is SIGKILLed (docs/cli.md, "Background load")."""

from __future__ import annotations

import json
import time

import psutil
import pytest

from pytest_cbchaos.cli import main as cbchaos_main
from pytest_cbchaos.report.model import validate


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


@pytest.mark.parametrize("value, expected", [
    ("65", "an integer between 0 and 64"), ("-1", "an integer between 0 and 64"), ("nan", "an integer"),
    ("2.5", "an integer"), ("lots", "an integer"),
])
def test_bad_values_are_usage_errors_before_any_test(pytester: pytest.Pytester, value: str, expected: str) -> None:
    pytester.makepyfile("def test_x(): raise AssertionError('ran')")
    result = pytester.runpytest(f"--cbchaos-background-load={value}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--cbchaos-background-load='{value}': expected {expected}*"])


def test_bad_ini_value_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncbchaos_background_load = 100\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--cbchaos-background-load='100' (ini cbchaos_background_load): expected*"])


LOADED = """
import psutil
from pytest_cbchaos.plugin.background import burner_pids

def test_burners_run_during_the_session(request):
    pids = burner_pids(request.config)
    assert len(pids) == 2 and all(psutil.Process(p).is_running() for p in pids)
    (request.config.rootpath / "pids.json").write_text(__import__("json").dumps(pids))
"""


def test_session_load_runs_for_the_session_and_is_reported(pytester: pytest.Pytester, scn) -> None:
    pytester.makepyfile(LOADED)
    result = pytester.runpytest(*scn.PLUGINS, "--cbchaos-background-load=2", "--cbchaos-report", "rep",
                                "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["cbchaos: background load 2 busy processes (per machine, started by the main *)",
                                 "cbchaos: background load 2 busy processes, * CPU s burned"])
    pids = json.loads((pytester.path / "pids.json").read_text())
    assert all(_gone(p) for p in pids)  # killed at session finish, before the report was written
    report = json.loads((pytester.path / "rep" / "report.json").read_text())
    validate(report)
    assert report["background_load"]["workers"] == 2 and report["background_load"]["cpu_s"] >= 0
    html = (pytester.path / "rep" / "report.html").read_text()
    assert 'id="background-load">background load 2 busy processes' in html


def test_no_load_by_default(pytester: pytest.Pytester, scn) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*scn.PLUGINS, "--cbchaos-report", "rep", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    assert "background load" not in result.stdout.str()
    report = json.loads((pytester.path / "rep" / "report.json").read_text())
    assert report["background_load"] == {"workers": 0, "cpu_s": 0.0}
    assert "background-load" not in (pytester.path / "rep" / "report.html").read_text()


XDIST = """
import os
import psutil

def _burners(pid):
    return [c for c in psutil.Process(pid).children() if any("cpu_burner" in a for a in c.cmdline())]

def test_only_the_controller_burns(request):
    assert hasattr(request.config, "workerinput")
    assert _burners(os.getpid()) == []
    assert len(_burners(os.getppid())) == 1  # the xdist controller's: one per machine
"""


def test_under_xdist_only_the_controller_starts_the_load(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(XDIST)
    result = pytester.runpytest_subprocess("-n", "2", "--cbchaos-background-load=1", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=1)


KILLED = """
import json, os, signal
import psutil
from pytest_cbchaos.plugin.background import burner_pids

def test_killed(request):
    pids = burner_pids(request.config)
    assert len(pids) == 3 and all(psutil.Process(p).is_running() for p in pids)
    (request.config.rootpath / "pids.json").write_text(json.dumps(pids))
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkilled_pytest_leaves_no_burner(pytester: pytest.Pytester) -> None:
    """The pytest process that holds the load is SIGKILLed mid-test: its burners are gone within 5 s."""
    pytester.makepyfile(KILLED)
    result = pytester.runpytest_subprocess("--cbchaos-background-load=3", "-p", "no:cacheprovider", timeout=120)
    assert result.ret == -9
    pids = json.loads((pytester.path / "pids.json").read_text())
    deadline = time.monotonic() + 5
    try:
        while not all(_gone(p) for p in pids):
            assert time.monotonic() < deadline, f"burners {[p for p in pids if not _gone(p)]} outlived pytest by 5 s"
            time.sleep(0.05)  # polling for the reaper, bounded
    finally:
        for p in pids:
            if not _gone(p):
                psutil.Process(p).kill()


def test_cbchaos_run_passes_background_load(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    (pytester.path / "scenarios").mkdir()
    assert cbchaos_main(["run", str(pytester.path / "scenarios"), "--background-load", "99"]) == 4
    assert "--cbchaos-background-load='99': expected an integer between 0 and 64" in capsys.readouterr().err
    assert cbchaos_main(["run", str(pytester.path / "scenarios"), "--background-load", "1"]) == 5  # nothing collected
    assert "cbchaos: background load 1 busy processes (per machine" in capsys.readouterr().out


def test_burners_that_cannot_start_are_a_usage_error(pytester: pytest.Pytester, tmp_path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_cbchaos.faults import cpu

    monkeypatch.setattr(cpu, "PYTHON", str(tmp_path / "no-python"))
    pytester.makepyfile("def test_x(): raise AssertionError('ran')")
    result = pytester.runpytest("--cbchaos-background-load=2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--cbchaos-background-load=2: the busy processes did not start: *cannot execute*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
