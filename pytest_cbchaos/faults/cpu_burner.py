"""One busy process for the ``cpu_stress`` fault and the session's background load (docs/cli.md).

Run by file path (``python -I -S .../cpu_burner.py --for-s S --parent PID``) so it starts without
importing the kit. It spins until ``--for-s`` seconds have passed or its parent is gone, whichever
comes first: a hard bound that holds even when nobody kills it (the reaper and the orphan sweep
of servers/process.py are the other two guarantees).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

READY_LINE = "cbchaos-burner: burning"
CHECK_EVERY = 200_000  # spin iterations between clock/parent checks (a few ms of CPU)


def burn(for_s: float, parent: int) -> str:
    """Spin; returns why it stopped ("time" or "parent")."""
    deadline = time.monotonic() + for_s
    x = 0
    while True:
        for _ in range(CHECK_EVERY):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        if time.monotonic() >= deadline:
            return "time"
        if os.getppid() != parent:
            return "parent"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cpu_burner")
    parser.add_argument("--for-s", type=float, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    print(READY_LINE, flush=True)
    reason = burn(args.for_s, args.parent)
    print(f"cbchaos-burner: stopped ({reason})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
