"""``cbchaos_faults.cpu_stress``: real busy processes, journaled like every fault, bounded even unkilled."""

from __future__ import annotations

import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pytest_cbchaos.faults import cpu, cpu_burner
from pytest_cbchaos.faults.controller import FaultController
from pytest_cbchaos.faults.cpu import CpuParameterError
from pytest_cbchaos.servers.process import ServerStartError


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_gone(pids: list[int], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not all(_gone(p) for p in pids):
        assert time.monotonic() < deadline, f"burners {[p for p in pids if not _gone(p)]} alive after {within_s} s"
        time.sleep(0.05)  # polling for process exit, bounded


def _sleep_overshoot_ms(n: int = 30) -> float:
    """Median overshoot of sleep(0.01): the scheduling lag a test's event loop would see."""
    lags = []
    for _ in range(n):
        t = time.perf_counter()
        time.sleep(0.01)
        lags.append((time.perf_counter() - t - 0.01) * 1000)
    return statistics.median(lags)


def _work_wall_ms(n: int = 5) -> float:
    """Median wall time of a fixed CPU-bound chunk: what a busy machine takes from a test process."""
    walls = []
    for _ in range(n):
        t = time.perf_counter()
        sum(i * i for i in range(200_000))
        walls.append((time.perf_counter() - t) * 1000)
    return statistics.median(walls)


def test_cpu_stress_burns_cpu_and_heal_kills_the_burners(capsys: pytest.CaptureFixture[str]) -> None:
    """Asserts only that the burners consumed CPU (the lag is printed, never asserted: timing-independent)."""
    c = FaultController()
    quiet, quiet_work = _sleep_overshoot_ms(), _work_wall_ms()
    workers = 2 * (os.cpu_count() or 1)
    fault = c.cpu_stress(workers=workers)
    pids = fault.window.params["pids"]
    assert len(pids) == workers and all(not _gone(p) for p in pids)
    assert all(psutil.Process(p).environ().get("CBCHAOS_OWNER") for p in pids)  # swept at the next start if orphaned
    loaded, loaded_work = _sleep_overshoot_ms(), _work_wall_ms()
    deadline = time.monotonic() + 30
    while fault.burners.cpu_seconds() <= 0.5:
        assert time.monotonic() < deadline, f"burners used {fault.burners.cpu_seconds()} CPU s in 30 s"
        time.sleep(0.1)  # polling the burners' CPU accounting, bounded
    burned = fault.burners.cpu_seconds()
    with capsys.disabled():
        print(f"\nunder {workers} burners ({burned:.2f} CPU s): sleep(0.01) overshoot median {quiet:.2f} -> "
              f"{loaded:.2f} ms, fixed CPU chunk median {quiet_work:.1f} -> {loaded_work:.1f} ms")
    fault.heal()
    _wait_gone(pids, 5)
    [w] = c.journal.windows()
    assert (w.kind, w.target, w.params["workers"]) == ("cpu_stress", "host", workers) and w.end_ns is not None
    assert c.journal.counts() == {"requested": 1, "applied": 1, "failed": 0}


def test_for_s_closes_the_window_and_teardown_heals_the_rest() -> None:
    c = FaultController()
    timed = c.cpu_stress(workers=1, for_s=0.2)
    open_ended = c.cpu_stress(workers=1)
    deadline = time.monotonic() + 20
    while not timed.healed:
        assert time.monotonic() < deadline, "a cpu_stress with for_s=0.2 still active after 20 s"
        time.sleep(0.02)  # polling for the heal timer, bounded
    _wait_gone(timed.window.params["pids"], 5)
    assert timed.window.end_ns - timed.window.start_ns >= 0.2e9
    assert open_ended.window.active
    c.heal_all()  # what the fixture does at teardown
    _wait_gone(open_ended.window.params["pids"], 5)
    assert not c.journal.windows()[1].active


@pytest.mark.parametrize("workers, for_s, key", [
    (0, None, "workers=0"), (65, None, "workers=65"), (True, None, "workers=True"), (2.0, None, "workers=2.0"),
    ("2", None, "workers='2'"), (1, math.nan, "for_s=nan"), (1, math.inf, "for_s=inf"), (1, -1, "for_s=-1"),
    (1, 0, "for_s=0"), (1, "5", "for_s='5'"),
])
def test_bad_parameters_are_failures_never_windows(workers: object, for_s: object, key: str) -> None:
    c = FaultController()
    with pytest.raises(CpuParameterError, match=f"cpu_stress: {key}, expected"):
        c.cpu_stress(workers=workers, for_s=for_s)  # type: ignore[arg-type]
    assert c.journal.windows() == [] and c.journal.counts() == {"requested": 1, "applied": 0, "failed": 1}


def test_a_burner_that_cannot_start_is_a_failed_fault(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c = FaultController()
    monkeypatch.setattr(cpu, "PYTHON", str(tmp_path / "no-python"))
    with pytest.raises(ServerStartError, match="cannot execute"):
        c.cpu_stress(workers=2)
    crashing = tmp_path / "crash.py"
    crashing.write_text("import sys; print('boom'); sys.exit(3)\n")
    monkeypatch.setattr(cpu, "PYTHON", sys.executable)
    monkeypatch.setattr(cpu, "BURNER", crashing)
    with pytest.raises(ServerStartError, match="exited with code 3 before (burning|it was ready)"):
        c.cpu_stress(workers=2)
    assert c.journal.windows() == [] and c.journal.counts() == {"requested": 2, "applied": 0, "failed": 2}
    assert [f.kind for f in c.journal.failures()] == ["cpu_stress", "cpu_stress"]


def test_a_burner_stops_by_itself_at_its_time_cap() -> None:
    proc = subprocess.run([sys.executable, "-I", "-S", cpu_burner.__file__, "--for-s", "0.3", "--parent",
                           str(os.getpid())], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [cpu_burner.READY_LINE, "cbchaos-burner: stopped (time)"]


PARENT = """
import os, subprocess, sys, time
p = subprocess.Popen([sys.executable, "-I", "-S", sys.argv[1], "--for-s", "600", "--parent", str(os.getpid())])
print(p.pid, flush=True)
time.sleep(600)
"""


def test_a_burner_stops_by_itself_when_its_parent_dies() -> None:
    """No reaper involved: the parent is a bare script, SIGKILLed; its burner notices within 5 s."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, cpu_burner.__file__], stdout=subprocess.PIPE, text=True)
    burner = 0
    try:
        burner = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert not _gone(burner)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        _wait_gone([burner], 5)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if burner and not _gone(burner):
            os.kill(burner, signal.SIGKILL)


def test_burners_are_enrolled_for_the_orphan_sweep() -> None:
    """The third bound: this process's registry lists the burners with its owner tag, which the next
    session's sweep_orphans uses to kill them if this process died without its reaper."""
    import json

    from pytest_cbchaos.servers.process import OWNER_ENV, OWNER_TAG, _registry_path

    burners = cpu.Burners(2, 30).start()
    try:
        registry = json.loads(_registry_path().read_text())
        assert registry["tag"] == OWNER_TAG
        assert set(burners.pids) <= {c["pid"] for c in registry["children"]}
        assert all(psutil.Process(p).environ().get(OWNER_ENV) == OWNER_TAG for p in burners.pids)
    finally:
        burners.stop()
    _wait_gone(burners.pids, 5)
