"""CPU contention: a group of busy OS processes (``faults/cpu_burner.py``), bounded three ways.

Each burner is a :class:`~pytest_cbchaos.servers.process.ManagedProcess` (own process group,
owner tag in its environment, registered with the reaper and the orphan registry), and it also
exits by itself after its time cap or when its parent is gone (docs/cli.md, "Background load").
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from pytest_cbchaos.faults import cpu_burner
from pytest_cbchaos.servers.ports import runtime_dir
from pytest_cbchaos.servers.process import ManagedProcess, ServerStartError

MAX_WORKERS = 64
DEFAULT_CAP_S = 3600.0  # a cpu_stress without for_s burns until healed, but never longer than this
MAX_FOR_S = 86_400.0
CAP_GRACE_S = 1.0  # a burner with for_s outlives its heal timer by this much, then stops itself
READY_TIMEOUT_S = 10.0
PYTHON = sys.executable
BURNER = Path(cpu_burner.__file__)


class CpuParameterError(ValueError):
    """``workers`` or ``for_s`` outside the vocabulary (docs/scenarios.md, ``cpu_stress``)."""


def check_cpu_params(workers: Any, for_s: Any) -> None:
    """Raise :class:`CpuParameterError` naming the key, the value and what was expected."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise CpuParameterError(f"cpu_stress: workers={workers!r}, expected an integer between 1 and {MAX_WORKERS}")
    if for_s is None:
        return
    if isinstance(for_s, bool) or not isinstance(for_s, (int, float)) or not (
            math.isfinite(for_s) and 0 < for_s <= MAX_FOR_S):
        raise CpuParameterError(f"cpu_stress: for_s={for_s!r}, expected a finite number of seconds "
                                f"> 0 and <= {MAX_FOR_S:g}, or None (until healed)")


class Burners:
    """``workers`` busy processes started together; :meth:`stop` is idempotent."""

    def __init__(self, workers: int, cap_s: float, *, name: str = "cpu-burner", log_dir: Path | None = None) -> None:
        self.workers = workers
        self.cap_s = cap_s
        self.name = name
        self.log_dir = log_dir or runtime_dir() / "burners" / str(os.getpid())
        self.procs: list[ManagedProcess] = []
        self._cpu_s_at_stop: float | None = None

    def start(self) -> "Burners":
        """Spawn all burners, then wait until each has printed its ready line (or fail, stopping all)."""
        argv = [PYTHON, "-I", "-S", str(BURNER), "--for-s", repr(float(self.cap_s)), "--parent", str(os.getpid())]
        try:
            for i in range(self.workers):
                proc = ManagedProcess(f"{self.name}-{os.getpid()}-{id(self):x}-{i}", argv, log_dir=self.log_dir)
                self.procs.append(proc)
                proc.start()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = list(self.procs)
        delay = 0.001
        while pending:
            for proc in list(pending):
                if cpu_burner.READY_LINE in proc.log_tail(5):
                    pending.remove(proc)
                elif not proc.alive:
                    raise ServerStartError(f"{proc.name} exited with code {proc.returncode} before burning.\n"
                                           f"Last lines of {proc.log_path}:\n{proc.log_tail()}")
            if pending and time.monotonic() >= deadline:
                raise ServerStartError(f"{pending[0].name} not burning after {READY_TIMEOUT_S:g}s.\n"
                                       f"Last lines of {pending[0].log_path}:\n{pending[0].log_tail()}")
            time.sleep(delay)  # polling interval of the readiness probe, not synchronisation
            delay = min(delay * 2, 0.05)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def cpu_seconds(self) -> float:
        """User + system CPU the burners consumed so far (their value at :meth:`stop` once stopped)."""
        if self._cpu_s_at_stop is not None:
            return self._cpu_s_at_stop
        total = 0.0
        for pid in self.pids:
            try:
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def stop(self) -> None:
        if self._cpu_s_at_stop is None:
            self._cpu_s_at_stop = self.cpu_seconds() if self.procs else 0.0
        for proc in self.procs:
            proc.kill()
            proc.log_path.unlink(missing_ok=True)  # it only matters for a start failure, already quoted
        try:
            self.log_dir.rmdir()
        except OSError:
            pass  # other burner groups of this process still log there
