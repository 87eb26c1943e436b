"""Orphan protection: a tiny watchdog process per pytest process.

The owner keeps the write end of a pipe; the reaper reads registration lines from it
(``+<pgid>`` / ``-<pgid>``). When the pipe reaches EOF — the owner exited, however it
died, SIGKILL included — the reaper sends SIGCONT and SIGKILL to every registered process
group and exits. ``PR_SET_PDEATHSIG`` via ``preexec_fn`` is avoided: unsafe in threaded parents.

Run as ``python -m pytest_cbchaos.servers.reaper`` with the pipe on stdin.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading


def _kill_group(pgid: int) -> None:
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return


def reaper_main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the terminal is the owner's business
    groups: set[int] = set()
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            break
        text = line.strip().decode("ascii", "replace")
        if len(text) < 2 or text[0] not in "+-" or not text[1:].isdigit():
            continue
        pgid = int(text[1:])
        if text[0] == "+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    for pgid in groups:
        _kill_group(pgid)


class ProcessReaper:
    """Owner side: starts the reaper lazily and tells it which process groups to kill."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = 0

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._owner_pid != os.getpid() or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pytest_cbchaos.servers.reaper"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True,
            )
            self._owner_pid = os.getpid()
        return self._proc

    def _send(self, line: str) -> None:
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None
            try:
                proc.stdin.write(line.encode("ascii") + b"\n")
                proc.stdin.flush()
            except BrokenPipeError:
                self._proc = None

    def register(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def unregister(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


REAPER = ProcessReaper()

if __name__ == "__main__":
    reaper_main()
