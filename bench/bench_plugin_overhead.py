"""What the installed plugin costs a session that uses none of it (goal: <= 50 ms, docs/architecture.md,
"Zero cost until used").

A trivial 100-test project is run with the plugin and with ``-p no:cbchaos`` (alternating, median of N
runs each, wall clock and CPU time, same interpreter, bytecode cache warmed first as in a normal install),
then ``python -X importtime`` shows what importing the plugin and its fixture modules loads.

    .venv/bin/python bench/bench_plugin_overhead.py [--runs 7] [--source CHECKOUT]   # CHECKOUT: compare another tree
"""

from __future__ import annotations

import argparse
import os
import resource
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


def run_env(pycache: Path, source: Path = ROOT) -> dict[str, str]:
    """``source`` first on the path; bytecode cached (in a private prefix) as a user's install has it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "CI", "PYTHONPATH")}
    env["PYTHONPATH"] = str(source)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def session_seconds(project: Path, env: dict[str, str], *extra: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one session; CPU (user + system) is the steadier figure on a loaded machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra], cwd=project,
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


PLUGIN_IMPORT = ("import importlib, pytest_cbchaos.plugin as p; "
                 "[importlib.import_module(m) for m in p.pytest_plugins]")


def import_ms(env: dict[str, str], cwd: Path) -> tuple[float, list[str]]:
    """``python -X importtime``: ms of the imports the plugin and its ``pytest_plugins`` modules add after
    pytest itself is imported, and the heavy third-party packages among them."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import pytest; {PLUGIN_IMPORT}"], env=env,
                         cwd=cwd, capture_output=True, text=True, check=True).stderr
    top: list[tuple[str, int]] = []  # imports at the top level of the -c script, in order
    for line in err.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cum, name = line[len("import time:"):].split("|")
        if cum.strip().isdigit() and not name.startswith("  "):
            top.append((name.strip(), int(cum)))
    after = top[[n for n, _ in top].index("pytest") + 1:]
    names = {line.split("|")[2].strip().split(".")[0] for line in err.splitlines() if line.count("|") == 2}
    heavy = sorted(names & {"redis", "aiohttp", "hypothesis", "httpx", "rich", "fakeredis", "yaml", "jsonschema",
                            "psutil"})
    return sum(cum for _, cum in after) / 1000, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project, pycache = Path(tmp, "project"), Path(tmp, "pycache")
        project.mkdir()
        make_project(project)
        env = run_env(pycache, args.source.resolve())
        session_seconds(project, env)  # warm the bytecode caches (both runs share them)
        session_seconds(project, env, "-p", "no:cbchaos")
        on, off = [], []
        for _ in range(args.runs):
            on.append(session_seconds(project, env))
            off.append(session_seconds(project, env, "-p", "no:cbchaos"))
        plugin_ms, heavy = import_ms(env, project)
    print(f"{args.source.resolve()}: 100 trivial tests, median of {args.runs} sessions each")
    for i, label in ((0, "wall"), (1, "CPU ")):
        med_on, med_off = statistics.median(r[i] for r in on), statistics.median(r[i] for r in off)
        print(f"  {label}  with plugin {med_on:.3f} s, -p no:cbchaos {med_off:.3f} s: added "
              f"{(med_on - med_off) * 1000:+.0f} ms (ratio {med_on / med_off:.3f}; goal <= 50 ms)")
    print(f"importing the plugin and its pytest_plugins modules after pytest: {plugin_ms:.1f} ms; "
          f"heavy packages imported: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
