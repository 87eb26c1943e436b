"""Acceptance: the README's "Install into your project" path, as a user takes it with the built wheel.

The wheel is built from a copy of this checkout (``pip wheel --no-deps``) and installed with ``--no-deps``
into a fresh venv whose dependencies come from this venv's site-packages through a ``.pth`` file (a full
install of the dependencies is minutes of downloads). In an empty project directory: ``cbchaos init``, then
``pytest -n 2`` on the starter test module, then ``cbchaos run --builtin`` on one packaged scenario
(``breaker-redis-down``; the whole set is ``make chaos``). Everything runs from the installed wheel, never
from this checkout.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pytest_cbchaos", "scenarios", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")

pytestmark = pytest.mark.slow


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 240) -> str:
    res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(argv)} exited {res.returncode}:\n{out[-4000:]}"
    return out


def _user_env(venv: Path) -> dict[str, str]:
    """A user's shell: the venv first on PATH, nothing of this session (no PYTHONPATH, no PYTEST_*)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("PYTEST_", "CBCHAOS_"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)], src,
         dict(os.environ))
    [built] = out.glob("pytest_cbchaos-*.whl")
    return built


def test_wheel_install_init_pytest_and_builtin_run(wheel: Path, tmp_path: Path) -> None:
    venv, project = tmp_path / "venv", tmp_path / "my-project"
    project.mkdir()
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, dict(os.environ))
    [site_dir] = venv.glob("lib/python3*/site-packages")
    (site_dir / "cbchaos-test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = _user_env(venv)
    python = str(venv / "bin" / "python")
    # --no-compile: Python compiles each module on its first import anyway (pip's pass over every file: ~2 s)
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed", "--no-compile",
          str(wheel)], tmp_path, env)
    where = _run([python, "-c", "import pytest_cbchaos; print(pytest_cbchaos.__file__)"], project, env)
    assert where.strip().startswith(str(site_dir)), where

    out = _run([str(venv / "bin" / "cbchaos"), "init"], project, env)
    assert "wrote conftest.py" in out and (project / ".github" / "workflows" / "cbchaos.yml").is_file()
    assert sorted(p.name for p in (project / "scenarios").iterdir()) == ["breaker-redis-down.yaml",
                                                                         "breaker-redis-latency.yaml"]
    again = subprocess.run([str(venv / "bin" / "cbchaos"), "init"], cwd=project, env=env, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 4 and "conftest.py exists; cbchaos init never overwrites" in again.stderr

    out = _run([python, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-q", "test_chaos_example.py"],
               project, env)
    assert "3 passed" in out, out[-3000:]

    out = _run([str(venv / "bin" / "cbchaos"), "run", "--builtin", "-k", "breaker-redis-down", "--report",
                "cbchaos-report"], project, env)
    assert "breaker-redis-down PASSED" in out, out[-3000:]
    assert (project / "cbchaos-report" / "report.json").is_file()
