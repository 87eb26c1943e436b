"""Worker-process bodies for recorder tests (importable by the spawn start method)."""

from __future__ import annotations

import time


def writer(remote, n: int) -> None:
    for i in range(n):
        h = remote.invoke(f="write", value=i, key="k")
        h.ok(None)
    remote.close()


def hang_mid_op(remote, started) -> None:
    h = remote.invoke(f="write", value=99, key="k")
    started.set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # bounded: the parent SIGKILLs us long before this
        time.sleep(0.05)
    h.ok(None)
