"""Redis fixture session start: the kit's ``cbchaos_redis`` vs pytest-redis's ``redisdb`` (figures only).

Each round runs two fresh ``pytest`` sessions, interleaved A B A B (kit, pytest-redis), each with one
trivial test that uses the Redis fixture. Per session it records the wall time of the whole
process and, through a tiny plugin, the test's setup and teardown phases: with a single test they
hold the session fixtures' setup and teardown (redis-server and, for the kit, the fault proxy in
front of it), so the comparison is not only interpreter start; redis-py is imported before them in
both sessions (pytest-redis imports it with its plugin, the kit on first use), so the phases hold
server work only. Prints medians and the median of the per-round ratios kit / pytest-redis.

    .venv/bin/python bench/bench_session_start.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PHASES_PLUGIN = '''
import json, os, time
import pytest
import redis  # loaded before the phases in both sessions: pytest-redis imports it with its plugin, the kit lazily

_t = {}

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    t0 = time.perf_counter(); yield; _t["setup"] = time.perf_counter() - t0

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    t0 = time.perf_counter(); yield; _t["teardown"] = time.perf_counter() - t0

def pytest_unconfigure(config):
    with open(os.environ["BENCH_PHASES_OUT"], "w") as fh:
        json.dump(_t, fh)
'''

TESTS = {
    "kit": ("test_kit.py", "def test_kit(cbchaos_redis):\n    assert cbchaos_redis.ping()\n",
            ["-p", "no:pytest_redis"]),
    "pytest-redis": ("test_pr.py", "def test_pr(redisdb):\n    assert redisdb.ping()\n",
                     ["-p", "no:cbchaos", "--redis-exec", shutil.which("redis-server") or "/usr/bin/redis-server"]),
}


def run_session(kind: str, work: Path) -> dict[str, float]:
    name, _, extra = TESTS[kind]
    out = work / f"{kind}.json"
    env = dict(os.environ, PYTHONPATH=f"{work}{os.pathsep}{ROOT}", BENCH_PHASES_OUT=str(out))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's session: the warm-up leaves .pyc files for both
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "bench_phases",
            "-c", str(work / "pytest.ini"), "--rootdir", str(work), *extra, str(work / name)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{kind} session failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    phases = json.loads(out.read_text())
    return {"wall": wall, "setup": phases["setup"], "teardown": phases["teardown"],
            "fixtures": phases["setup"] + phases["teardown"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "pytest.ini").write_text("[pytest]\n")
        (work / "bench_phases.py").write_text(PHASES_PLUGIN)
        for name, body, _ in TESTS.values():
            (work / name).write_text(body)
        for kind in TESTS:  # warm-up: page cache, .pyc files
            run_session(kind, work)
        rows: dict[str, list[dict[str, float]]] = {kind: [] for kind in TESTS}
        for _ in range(args.rounds):
            for kind in TESTS:
                rows[kind].append(run_session(kind, work))
    med = statistics.median
    print(f"Redis fixture session, {args.rounds} interleaved rounds, medians (seconds)")
    print(f"{'':<14} {'setup':>8} {'teardown':>9} {'setup+td':>9} {'process':>8}")
    for kind, runs in rows.items():
        print(f"{kind:<14} " + " ".join(f"{med(r[k] for r in runs):{w}.4f}" for k, w in
                                        (("setup", 8), ("teardown", 9), ("fixtures", 9), ("wall", 8))))
    for key, label in (("fixtures", "fixture setup+teardown"), ("wall", "whole process")):
        ratios = [a[key] / b[key] for a, b in zip(rows["kit"], rows["pytest-redis"])]
        print(f"kit / pytest-redis, {label}: median of per-round ratios {med(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    main()
