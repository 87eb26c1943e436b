"""Redis fixture setup + teardown time (median of N), per backend.

The kit's target is <= 0.10 s for start-to-PONG plus teardown (pytest-redis takes about 0.42 s).
Also prints the per-test reset cost (FLUSHALL) and restart() to PONG.

    .venv/bin/python bench/bench_redis_fixture.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pytest_cbchaos.servers.redis import start_redis


def measure(backend: str, runs: int, workdir: Path) -> dict[str, float]:
    setup, teardown, reset, restart = [], [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        server = start_redis(backend, workdir=workdir)
        t1 = time.perf_counter()
        with server.client() as c:
            c.set("k", "v")
            t2 = time.perf_counter()
            c.flushall()
            reset.append(time.perf_counter() - t2)
        t3 = time.perf_counter()
        server.restart()
        restart.append(time.perf_counter() - t3)
        t4 = time.perf_counter()
        server.stop()
        teardown.append(time.perf_counter() - t4)
        setup.append(t1 - t0)
    med = statistics.median
    return {"setup": med(setup), "teardown": med(teardown), "total": med(setup) + med(teardown),
            "reset": med(reset), "restart": med(restart)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    backends = (["binary"] if shutil.which("redis-server") else []) + ["fakeredis"]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"Redis fixture lifecycle, median of {args.runs} runs (seconds)")
        print(f"{'backend':<10} {'setup':>8} {'teardown':>9} {'total':>8} {'reset':>9} {'restart':>8}  vs pytest-redis 0.42 s")
        for backend in backends:
            r = measure(backend, args.runs, Path(tmp))
            print(f"{backend:<10} {r['setup']:8.4f} {r['teardown']:9.4f} {r['total']:8.4f} {r['reset']:9.5f} "
                  f"{r['restart']:8.4f}  ratio {r['total'] / 0.42:.2f}")


if __name__ == "__main__":
    main()
