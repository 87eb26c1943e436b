"""``cbchaos run`` as a user meets it: a scenario file named on the command line runs whatever its name,
no assertion-rewrite warning, node ids that do not move with an existing report directory, one ``check``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_cbchaos.cli import build_parser, main

HERE = Path(__file__).parent


def _project(root: Path) -> Path:
    """A project without an ini file: ``mine/my.yaml`` (neither ``*.scenario.yaml`` nor under ``scenarios/``)."""
    from tests.scenario.scn_support import MUTANT

    proj = root / "proj"
    (proj / "mine").mkdir(parents=True)
    (proj / "mine" / "sample_targets.py").write_text((HERE.parent / "scenario" / "sample_targets.py").read_text())
    (proj / "mine" / "my.yaml").write_text(MUTANT)
    (root / "out").mkdir()  # the report directory of an earlier run, outside the project
    return proj


def test_a_named_file_is_collected_with_stable_ids_and_no_rewrite_warning(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    res = subprocess.run([sys.executable, "-m", "pytest_cbchaos.cli", "run", "mine/my.yaml", "--report", "../out",
                          "-q", "--", "--collect-only", "-p", "no:cacheprovider"], cwd=proj, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "mine/my.yaml::counter-lost-update" in res.stdout.splitlines(), out[-3000:]
    assert "PytestAssertRewriteWarning" not in out
    assert "not found" not in out


def test_options_reach_pytest_as_single_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A separate value naming an existing directory would count as a path for pytest's rootdir."""
    proj = _project(tmp_path)
    monkeypatch.chdir(proj)
    seen: list[list[str]] = []
    monkeypatch.setattr(pytest, "main", lambda argv: seen.append(list(argv)) or 0)
    assert main(["run", "mine/my.yaml", "--report", "../out", "--seed", "3", "--redis", "fakeredis",
                 "-k", "counter", "-m", "not slow", "-n", "2", "-q"]) == 0
    [argv] = seen
    assert [a for a in argv if not a.startswith("-")] == ["mine/my.yaml", "pytest_cbchaos.plugin.scenario",
                                                          "pytest_cbchaos.plugin.report"]
    assert {"--cbchaos-report=../out", "--cbchaos-seed=3", "--cbchaos-redis-backend=fakeredis", "-kcounter",
            "-mnot slow", "--numprocesses=2"} <= set(argv)


def test_help_lists_each_command_once() -> None:
    text = build_parser().format_help()
    rows = [line.split()[0] for line in text.splitlines() if line.startswith("    ") and line.split()]
    assert sorted(rows) == sorted(set(rows)) and "check" in rows
