"""INV-19 with real opencode: tool-call subprocesses and the end of a pytest session.

opencode's bash tool runs its command in a session of its own, so a ``sleep 300`` tool call is not
in the server's process group: a SIGKILL of the server orphans it. The launcher finds such children
by the env tag every descendant inherits (``CBCHAOS_SERVER_TAG``) and kills them on restart / stop.

* the runner sees the SIGKILL during the tool call as ``SERVER_UNREACHABLE`` (INV-4), the restart
  kills the orphaned child of the replaced generation, the retry ends ``OK``; after ``stop()``
  :func:`check_clean_teardown` (process scan included) passes;
* a held SIGSTOP during the tool call, then ``stop()``: same clean teardown;
* ``M13ToolChildOrphaned`` (stops only the group) leaves the child alive and is caught;
* a pytest session using ``cbchaos_opencode`` that ends while a tool call runs leaves no process of
  the server and no open log handle on the machine (issue acceptance).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import psutil
import pytest

from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner, RunStatus
from pytest_cbchaos.lag import judged_text, within
from pytest_cbchaos.stateful.recovery_machine import (InvariantViolation, check_clean_teardown, log_holders,
                                                      open_fds, stray_processes)

pytestmark = [pytest.mark.slow, pytest.mark.opencode, pytest.mark.timeout(240),
              pytest.mark.usefixtures("opencode_binary")]  # skips without opencode (fails under CI)

BASH_ALLOWED = {"permission": {"bash": "allow"}}
SLEEP_CALL = {"command": "sleep 300", "description": "a long tool call"}


def _wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)  # polling a condition with a deadline
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _sleep_child(server: Any) -> int | None:
    """The pid of the tool call's ``sleep 300`` among the server's tagged processes."""
    for pid in stray_processes(server):
        try:
            if "sleep 300" in " ".join(psutil.Process(pid).cmdline()):
                return pid
        except psutil.Error:
            continue
    return None


@pytest.fixture
def mock() -> Iterator[Any]:
    from pytest_cbchaos.servers.mockllm import MockLLM

    llm = MockLLM().start()
    yield llm
    llm.release_all()
    llm.stop()


def _server(cls: type, tmp_path: Path, mock: Any) -> Any:
    return cls(root=tmp_path / "oc", provider_url=mock.base_url, config_extra=BASH_ALLOWED, stop_grace=1.0)


def _start_tool_call(server: Any, mock: Any) -> int:
    """Prompt straight through the API; returns the pid of the running ``sleep 300``."""
    from pytest_cbchaos.servers.mockllm import tool_call

    mock.script("main", [tool_call("bash", SLEEP_CALL)])
    sid = server.request("POST", "/session", json={}).json()["id"]
    resp = server.request("POST", f"/session/{sid}/prompt_async", json={"parts": [{"type": "text", "text": "go"}]})
    assert resp.status_code == 204, resp.text
    return _wait_for(lambda: _sleep_child(server), 60, "the tool call's sleep 300")


def test_sigkill_during_tool_call_recovers_and_leaves_no_child(tmp_path: Path, mock: Any) -> None:
    from pytest_cbchaos.servers.mockllm import tool_call
    from pytest_cbchaos.servers.opencode import OpencodeServer

    server = _server(OpencodeServer, tmp_path, mock)
    baseline = len(open_fds())
    try:
        server.start()
        mock.script("main", [tool_call("bash", SLEEP_CALL)])  # the retry after the restart gets "ok"
        # roomy stall_timeout: the first turn of a fresh instance bootstraps for seconds without events
        with RecoveryRunner(server, RecoveryConfig.for_tests(stall_timeout=30, max_recoveries=1)) as runner:
            out: list[Any] = []
            th = threading.Thread(target=lambda: out.append(runner.run_turn("run the long command")))
            th.start()
            child = _wait_for(lambda: _sleep_child(server) or (not th.is_alive() and -1), 60, "sleep 300")
            assert child != -1, f"the turn ended before the tool call ran: {out}"
            runner.mark_fault()
            server.kill()
            th.join(120)
            assert not th.is_alive()
        res = out[0]
        first = res.attempts[0]
        assert first.verdict == RunStatus.SERVER_UNREACHABLE, res  # INV-4, tool-call trigger
        assert first.fault_to_verdict_s is not None  # lag-aware: measured - observed lag <= 2 s
        assert within(first.fault_to_verdict_s, first.lag_s, 2.0), judged_text(first.fault_to_verdict_s, first.lag_s, 2.0)
        assert res.status == RunStatus.OK and res.recoveries_used == 1, res
        assert not _running(child), "the restart left the replaced generation's tool-call child alive"
    finally:
        server.stop()
    check_clean_teardown(server, fd_baseline=baseline)
    assert len(server.log_paths) == 2


def test_stop_while_paused_in_a_tool_call_leaves_no_child(tmp_path: Path, mock: Any) -> None:
    from pytest_cbchaos.servers.opencode import OpencodeServer

    server = _server(OpencodeServer, tmp_path, mock)
    baseline = len(open_fds())
    try:
        server.start()
        child = _start_tool_call(server, mock)
        server.pause()  # SIGSTOP the server's group; the tool child (own session) keeps running
        assert _running(child)
    finally:
        server.stop()
    assert not _running(child)
    check_clean_teardown(server, fd_baseline=baseline)


def test_m13_orphaned_tool_child_is_caught(tmp_path: Path, mock: Any) -> None:
    """The process scan can fail: a launcher that only kills the group leaves the tool child alive."""
    from pytest_cbchaos.testing.runner_mutants import M13ToolChildOrphaned

    server = _server(M13ToolChildOrphaned, tmp_path, mock)
    try:
        server.start()
        child = _start_tool_call(server, mock)
        server.kill()
        server.stop()
        assert _running(child) and child in stray_processes(server)
        with pytest.raises(InvariantViolation, match="INV-19.*outlived stop"):
            check_clean_teardown(server)
    finally:
        server.stop()
        server.reap_orphans()
    assert stray_processes(server) == []


# -- the end of a pytest session (issue acceptance) ---------------------------------------------------
SESSION_TEST = '''
import json, os, time
import psutil
from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner, RunStatus
from pytest_cbchaos.servers import mockllm as m

def test_turn_then_tool_call_left_running(cbchaos_opencode, cbchaos_mock_llm):
    server = cbchaos_opencode
    cbchaos_mock_llm.script("main", [m.text("fine", chunks=2)])
    with RecoveryRunner(server, RecoveryConfig.for_tests(stall_timeout=30)) as runner:
        assert runner.run_turn("a normal turn").status == RunStatus.OK
    cbchaos_mock_llm.script("main", [m.tool_call("bash", {"command": "sleep 300", "description": "long"})])
    sid = server.request("POST", "/session", json={}).json()["id"]
    server.request("POST", f"/session/{sid}/prompt_async", json={"parts": [{"type": "text", "text": "go"}]})
    deadline = time.monotonic() + 60
    child = None
    while child is None and time.monotonic() < deadline:
        for p in psutil.process_iter(["pid"]):
            try:
                if "sleep 300" in " ".join(p.cmdline()) and \\
                        p.environ().get("CBCHAOS_SERVER_TAG", "").startswith(server._uid + "."):
                    child = p.pid
            except psutil.Error:
                pass
        time.sleep(0.1)
    assert child is not None, "the bash tool call never started"
    with open(os.environ["CBCHAOS_TEST_OUT"], "w") as fh:
        json.dump({"uid": server._uid, "logs": str(server.log_dir), "pids": [server.pid, child]}, fh)
'''


def test_session_end_leaves_no_process_and_no_open_log(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Acceptance: after a pytest session that used ``cbchaos_opencode`` and ended with a tool call
    running, no process of the server (any generation, tool children included) lives and no process
    on the machine holds one of its logs; every log has its exit record."""
    pytester.makepyfile(SESSION_TEST)  # its session shares the outer opencode version cache (tests/conftest.py)
    out = tmp_path / "out.json"
    env_before = os.environ.get("CBCHAOS_TEST_OUT")
    os.environ["CBCHAOS_TEST_OUT"] = str(out)
    try:
        res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rs", "-p", "no:xdist", timeout=180)
    finally:
        if env_before is None:
            del os.environ["CBCHAOS_TEST_OUT"]
        else:
            os.environ["CBCHAOS_TEST_OUT"] = env_before
    res.assert_outcomes(passed=1)
    data = json.loads(out.read_text())
    handle = SimpleNamespace(_uid=data["uid"])
    assert stray_processes(handle) == [], "processes of the session's opencode outlived the session"
    assert [pid for pid in data["pids"] if _running(pid)] == []
    logs = sorted(Path(data["logs"]).glob("opencode.g*.log"))
    assert logs and log_holders(logs) == [], log_holders(logs)
    for log in logs:
        assert "--- cbchaos exit:" in log.read_text(), log


def test_scans_find_a_planted_leak(tmp_path: Path) -> None:
    """The session-end checks can fail: a tagged process and an open log are both found."""
    from pytest_cbchaos.servers.opencode import TAG_ENV

    handle = SimpleNamespace(_uid="cbchaosplanted")
    log = tmp_path / "opencode.g1.log"
    log.write_text("x\n")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            env={**os.environ, TAG_ENV: "cbchaosplanted.g1"})
    try:
        with open(log, "a"):  # noqa: SIM115 - the planted open handle
            _wait_for(lambda: proc.pid in stray_processes(handle), 10, "the planted process in the scan")
            assert (os.getpid(), str(log)) in log_holders([log])
    finally:
        proc.kill()
        proc.wait(10)
    assert stray_processes(handle) == [] and log_holders([log]) == []
