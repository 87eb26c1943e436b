"""What the installed plugin costs a session that uses none of it (goal: <= 50 ms, docs/architecture.md,
"Zero cost until used").

A trivial 100-test project is run with the plugin and with ``-p no:cbchaos`` (alternating, median of N
wall-clock runs each, same interpreter, bytecode cache warmed first as in a normal install), then
``python -X importtime`` shows what importing the plugin itself loads.

    .venv/bin/python bench/bench_plugin_overhead.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_project(directory: Path, tests: int = 100) -> None:
    body = "".join(f"def test_{i}():\n    assert {i} == {i}\n\n\n" for i in range(tests))
    (directory / "test_trivial.py").write_text(body)
    (directory / "pytest.ini").write_text("[pytest]\n")


def run_env(pycache: Path) -> dict[str, str]:
    """This checkout first on the path; bytecode cached (in a private prefix) as a user's install has it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "CI")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def session_seconds(project: Path, env: dict[str, str], *extra: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra], cwd=project,
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def import_ms(env: dict[str, str]) -> tuple[float, float, list[str]]:
    """(plugin import ms, pytest import ms, third-party top-level packages the plugin's import added)."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import pytest_cbchaos.plugin"], env=env,
                         capture_output=True, text=True, check=True).stderr
    cumulative: dict[str, int] = {}
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cum, name = (part.strip() for part in line[len("import time:"):].split("|"))
        if cum.isdigit():
            cumulative[name] = int(cum)
    added = sorted({n.split(".")[0] for n in cumulative}
                   & {"redis", "aiohttp", "hypothesis", "httpx", "rich", "fakeredis", "yaml", "jsonschema", "psutil"})
    return cumulative.get("pytest_cbchaos.plugin", 0) / 1000, cumulative.get("pytest", 0) / 1000, added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project, pycache = Path(tmp, "project"), Path(tmp, "pycache")
        project.mkdir()
        make_project(project)
        env = run_env(pycache)
        session_seconds(project, env)  # warm the bytecode caches (both runs share them)
        session_seconds(project, env, "-p", "no:cbchaos")
        on, off = [], []
        for _ in range(args.runs):
            on.append(session_seconds(project, env))
            off.append(session_seconds(project, env, "-p", "no:cbchaos"))
        plugin_ms, pytest_ms, added = import_ms(env)
    med_on, med_off = statistics.median(on), statistics.median(off)
    print(f"100 trivial tests, median of {args.runs} sessions (seconds)")
    print(f"  with plugin        {med_on:.3f}")
    print(f"  -p no:cbchaos      {med_off:.3f}")
    print(f"  added per session  {(med_on - med_off) * 1000:+.0f} ms  (ratio {med_on / med_off:.3f}; goal <= 50 ms)")
    print(f"import pytest_cbchaos.plugin: {plugin_ms:.1f} ms cumulative (of which pytest {pytest_ms:.1f} ms); "
          f"heavy packages it imports: {', '.join(added) or 'none'}")


if __name__ == "__main__":
    main()
