"""Run every benchmark in bench/ one after another and print their figures (``make bench``).

``bench_mutation.py`` is left out: it scores the tests, not the kit, and takes minutes (see its docstring).

Each script prints medians of several runs and ratios against a baseline measured in the same
process. Run on an otherwise idle machine: the figures are wall-clock on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["bench_redis_fixture.py", "bench_proxy.py", "bench_breaker.py", "bench_linearizability.py",
         "bench_stream.py", "bench_opencode.py", "bench_recovery.py", "bench_plugin_overhead.py",
         "bench_topology.py"]


def main() -> int:
    failed = []
    for name in ORDER:
        print(f"\n=== {name} ===", flush=True)
        if subprocess.call([sys.executable, str(HERE / name)]) != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
