"""If pytest itself is SIGKILLed, every server it started dies within 5 s."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

INNER = textwrap.dedent("""
    import json, os, time
    def test_hold(cbchaos_redis_proc, cbchaos_toxiproxy, tmp_path_factory):
        pids = [cbchaos_redis_proc.pid, cbchaos_toxiproxy.process.pid]
        with open(os.environ["PIDFILE"] + ".tmp", "w") as fh:
            json.dump(pids, fh)
        os.rename(os.environ["PIDFILE"] + ".tmp", os.environ["PIDFILE"])
        time.sleep(60)  # held until the outer test SIGKILLs this pytest process
""")


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_servers_die_when_pytest_is_sigkilled(tmp_path):
    (tmp_path / "test_inner.py").write_text(INNER)
    pidfile = tmp_path / "pids.json"
    env = dict(os.environ, PIDFILE=str(pidfile))
    env.pop("PYTEST_XDIST_WORKER", None)
    inner = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                              str(tmp_path / "test_inner.py")], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: pidfile.exists() or inner.poll() is not None, 60, "the inner run to start its servers")
        assert pidfile.exists(), "inner pytest exited before starting servers"
        pids = json.loads(pidfile.read_text())
        assert all(_alive(p) for p in pids)
        os.kill(inner.pid, signal.SIGKILL)
        inner.wait(10)
        _wait_for(lambda: not any(_alive(p) for p in pids), 5, f"servers {pids} to die after SIGKILL of pytest")
    finally:
        if inner.poll() is None:
            inner.kill()
