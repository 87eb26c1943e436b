"""INV-19 after a restart, whatever state the replaced generation is in: still running (a restart
on a stall), dead but not reaped (a zombie nobody polled yet) and dead and already reaped (the
runner's liveness probe polled it first). Each state is forced before the restart; the tool-call
child (its own session, like opencode's bash tool) must be gone right after the restart, and the
teardown must be clean. M17 cleans only while the old pid exists and is caught in the reaped state.

A stand-in ``opencode`` binary (health only, plus a detached tagged child) runs the launcher's real
start / stop / restart code without starting opencode (docs/recovery.md)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil
import pytest

from pytest_cbchaos.recovery.handle import ServerTarget
from pytest_cbchaos.servers.opencode import OpencodeServer
from pytest_cbchaos.stateful.recovery_machine import InvariantViolation, check_clean_teardown, stray_processes
from pytest_cbchaos.testing.runner_mutants import M17CleanupOnlyIfOldSeen
from tests.recovery.test_recovery_mutants_extra import FAKE_SERVE

TOOL_CHILD = '''\
import subprocess
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)  # cbchaos-tool-child"],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
'''
STATES = ("running", "zombie", "reaped")


@pytest.fixture
def tool_binary(tmp_path: Any) -> Any:
    """A stand-in ``opencode serve`` that starts one detached tool-call child per generation."""
    import stat
    import sys

    from pytest_cbchaos.servers.opencode import OpencodeBinary

    script = tmp_path / "opencode"
    body = FAKE_SERVE.replace("print(\"fake opencode serve", TOOL_CHILD + "print(\"fake opencode serve", 1)
    assert TOOL_CHILD in body
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return OpencodeBinary(path=script, version="1.18.33")


def _tool_child(server: Any, generation: int) -> int:
    tag = f"{server._uid}.g{generation}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in stray_processes(server):
            try:
                p = psutil.Process(pid)
                if "cbchaos-tool-child" in " ".join(p.cmdline()) and p.environ().get("CBCHAOS_SERVER_TAG") == tag:
                    return pid
            except psutil.Error:
                continue
        time.sleep(0.02)  # the child is spawned at start; bounded poll
    raise AssertionError(f"no tool child of generation {generation}")


def _force(server: Any, state: str) -> None:
    """Put the current generation in ``state`` before the restart (no timing involved)."""
    proc = server._proc
    if state == "running":
        return
    os.kill(proc.pid, signal.SIGKILL)  # the server alone: its tool child lives on in its own session
    deadline = time.monotonic() + 10
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:  # /proc only: does not reap
        assert time.monotonic() < deadline, "the killed server never became a zombie"
        time.sleep(0.01)  # the kernel finishes the kill asynchronously; bounded poll
    if state == "reaped":
        assert proc.wait(5) is not None and not psutil.pid_exists(proc.pid)


def _restart_in(cls: type, state: str, tmp_path: Any, binary: Any) -> tuple[Any, bool]:
    """Start, force ``state``, restart as the runner does; returns (server, old child alive after restart)."""
    server = cls(root=tmp_path / f"oc-{state}", provider_url="http://127.0.0.1:9/v1", binary=binary,
                 warm=False, stop_grace=1.0)
    server.start()
    old = _tool_child(server, 1)
    _force(server, state)
    ServerTarget(handle=server).restart()
    assert server.generation == 2
    _tool_child(server, 2)
    try:
        alive = psutil.Process(old).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        alive = False
    return server, alive


@pytest.mark.parametrize("state", STATES)
def test_restart_cleans_the_replaced_generation(state: str, tmp_path: Any, tool_binary: Any) -> None:
    server, old_alive = _restart_in(OpencodeServer, state, tmp_path, tool_binary)
    server.stop()
    assert not old_alive, f"the restart left generation 1's tool child alive ({state})"
    check_clean_teardown(server)


def test_m17_cleanup_only_if_old_seen_is_caught(tmp_path: Any, tool_binary: Any) -> None:
    server, old_alive = _restart_in(M17CleanupOnlyIfOldSeen, "reaped", tmp_path, tool_binary)
    try:
        server.stop()
        assert old_alive, "M17 cleaned up after a reaped generation: the forced state was not reached"
        with pytest.raises(InvariantViolation, match="INV-19.*outlived stop"):
            check_clean_teardown(server)
    finally:
        server.reap_orphans()
    assert stray_processes(server) == []


def test_m17_cleans_while_the_old_pid_exists(tmp_path: Any, tool_binary: Any) -> None:
    """The mutant is right in the other two states: only the reaped state tells it apart."""
    for state in ("running", "zombie"):
        server, old_alive = _restart_in(M17CleanupOnlyIfOldSeen, state, tmp_path, tool_binary)
        server.stop()
        server.reap_orphans()
        assert not old_alive, state
