"""The opencode launcher: fast checks with fake binaries, and real ``opencode serve`` (marked slow)."""

from __future__ import annotations

import os
import signal
import stat
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_cbchaos.servers import mockllm as m
from pytest_cbchaos.servers.mockllm import MockLLM
from pytest_cbchaos.servers.opencode import (INSTALL_HINT, Liveness, OpencodeBinary, OpencodeNotFound,
                                             OpencodeServer, OpencodeStartError, find_opencode)
from pytest_cbchaos.servers.opencode_config import build_config, build_env

PROMPT = {"providerID": "cbchaos", "modelID": "mock"}


def _fake_binary(tmp_path: Path, body: str) -> OpencodeBinary:
    path = tmp_path / "fake-opencode"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return OpencodeBinary(path, "fake")


def _after_logging(line: str, probe: Any, within_s: float = 30.0) -> Any:
    """A readiness probe that first waits (bounded) for the child to log ``line``, then answers as ``probe``: the
    fake's start is waited for, not timed, so the deadline's error quotes its line on a box that takes longer
    than the deadline to start an interpreter."""
    def ready(proc: Any) -> bool:
        deadline = time.monotonic() + within_s
        while line not in proc.log_path.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the fake's log, bounded
        return probe(proc)
    return ready


# -- fast: config, discovery, start errors --------------------------------------------------------------
def test_config_points_at_provider_and_merges_extra() -> None:
    cfg = build_config("http://127.0.0.1:1234/v1", "k", {"provider": {"cbchaos": {"options": {"timeout": 5}}},
                                                         "permission": {"bash": "deny"}})
    prov = cfg["provider"]["cbchaos"]
    assert prov["npm"] == "@ai-sdk/openai-compatible"
    assert prov["options"] == {"baseURL": "http://127.0.0.1:1234/v1", "apiKey": "k", "timeout": 5}
    assert cfg["model"] == "cbchaos/mock" and cfg["autoupdate"] is False and cfg["share"] == "disabled"
    assert cfg["permission"] == {"bash": "deny"}
    with pytest.raises(ValueError, match="provider_url='https://api.openai.com/v1'.*loopback"):
        build_config("https://api.openai.com/v1")


def test_child_env_is_an_allow_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCODE_CONFIG", "/home/me/.opencode.json")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    env = build_env(tmp_path, "opencode", "pw")
    assert "OPENCODE_CONFIG" not in env and "OPENAI_API_KEY" not in env
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:9" and "127.0.0.1" in env["NO_PROXY"]  # offline by default
    assert "HTTPS_PROXY" not in build_env(tmp_path, "opencode", "pw", offline=False)
    assert env["HOME"] == str(tmp_path / "home") and env["XDG_DATA_HOME"] == str(tmp_path / "data")
    assert env["OPENCODE_SERVER_PASSWORD"] == "pw" and env["OPENCODE_DISABLE_AUTOUPDATE"] == "1"


def test_explicit_missing_binary_names_install_command(tmp_path: Path) -> None:
    with pytest.raises(OpencodeNotFound) as exc:
        find_opencode(tmp_path / "nope")
    assert "npm install --prefix .cbchaos-node opencode-ai@1.18.33" in str(exc.value)
    assert "CBCHAOS_OPENCODE_BIN" in INSTALL_HINT and "./scripts/setup" not in INSTALL_HINT  # a user's project has none


def test_early_exit_error_quotes_log_tail(tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path, """
        import sys
        print("cbchaos-fake: database is locked at /x/opencode.db", flush=True)
        sys.exit(3)
    """)
    server = OpencodeServer(root=tmp_path / "srv", provider_url="http://127.0.0.1:9/v1", binary=fake,
                            startup_timeout=5)
    with pytest.raises(OpencodeStartError) as exc:
        server.start()
    msg = str(exc.value)
    assert "database is locked" in msg and "exit status: 3" in msg and "last 30 log lines" in msg
    assert str(tmp_path / "srv" / "logs") in msg and "serve --hostname 127.0.0.1" in msg
    assert server.generation == 3  # retried on new ports, at most 3 spawns
    assert all("requested_stop=False" in p.read_text() for p in server.log_paths)
    server.stop()


def test_readiness_timeout_quotes_log_tail(tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path, """
        import time
        print("cbchaos-fake: still loading plugins", flush=True)
        for _ in range(600):
            time.sleep(0.1)
    """)
    server = OpencodeServer(root=tmp_path / "srv", provider_url="http://127.0.0.1:9/v1", binary=fake,
                            startup_timeout=0.5)
    server._ready = _after_logging("still loading plugins", server._ready)  # type: ignore[method-assign]
    with pytest.raises(OpencodeStartError, match="(?s)not ready after 0.5s.*still loading plugins"):
        server.start()
    assert server.liveness() is Liveness.DEAD
    server.stop()


def test_401_from_health_fails_at_once_saying_password(tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path, """
        import sys
        from http.server import BaseHTTPRequestHandler, HTTPServer
        port = int(sys.argv[sys.argv.index("--port") + 1])
        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(401); self.send_header("Content-Length", "0"); self.end_headers()
            def log_message(self, *a):
                pass
        HTTPServer(("127.0.0.1", port), H).serve_forever()
    """)
    server = OpencodeServer(root=tmp_path / "srv", provider_url="http://127.0.0.1:9/v1", binary=fake,
                            startup_timeout=10)
    with pytest.raises(OpencodeStartError, match="401.*OPENCODE_SERVER_PASSWORD did not reach the server"):
        server.start()
    assert server.liveness() is Liveness.DEAD
    server.stop()


def test_missing_opencode_skips_with_install_hint_or_fails_under_ci(pytester: pytest.Pytester,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_it(cbchaos_opencode):\n    pass\n")
    broken = pytester.path / "broken-opencode"  # exists but does not run: no fallback to another opencode
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CBCHAOS_OPENCODE_BIN", str(broken))
    monkeypatch.delenv("CI", raising=False)
    res = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    res.assert_outcomes(skipped=1)
    res.stdout.fnmatch_lines(["*npm install --prefix .cbchaos-node opencode-ai@1.18.33*"])
    monkeypatch.setenv("CI", "true")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*required: CI is set*"])


FAKE_SERVE = """
import json, subprocess, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port = int(sys.argv[sys.argv.index("--port") + 1])
# a "tool call" child in its own session, as opencode's bash tool may leave behind
if True:  # CHILD
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"healthy": True, "version": "fake"}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
print("fake opencode listening", flush=True)
HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def test_lifecycle_with_fake_server(tmp_path: Path) -> None:
    """restart (new port by default, same port on request), pause/kill liveness, journal, descendants killed."""
    import psutil

    from pytest_cbchaos.faults.journal import FaultJournal

    journal = FaultJournal()
    server = OpencodeServer(root=tmp_path / "srv", provider_url="http://127.0.0.1:9/v1",
                            binary=_fake_binary(tmp_path, FAKE_SERVE), startup_timeout=10, stop_grace=0.5,
                            journal=journal, warm=False)
    with server:
        assert server.version == "fake" and server.liveness() is Liveness.ALIVE and server.pgid == server.pid
        port = server.port
        kids = []
        deadline = time.monotonic() + 5
        while not kids and time.monotonic() < deadline:
            kids = psutil.Process(server.pid).children(recursive=True)
            time.sleep(0.02)  # waiting for the fake's child to spawn, bounded
        assert kids and os.getpgid(kids[0].pid) != server.pgid  # outside the server's group
        server.pause()
        assert server.liveness() is Liveness.STOPPED
        server.resume()
        assert server.liveness() is Liveness.ALIVE
        server.restart()  # default: new port
        assert server.port != port and server.generation == 2
        assert not kids[0].is_running() or kids[0].status() == psutil.STATUS_ZOMBIE
        port = server.port
        gen2_kids = []
        deadline = time.monotonic() + 5
        while not gen2_kids and time.monotonic() < deadline:
            gen2_kids = psutil.Process(server.pid).children(recursive=True)
            time.sleep(0.02)  # waiting for the fake's child to spawn, bounded
        server.kill()  # SIGKILL to the group: the child in its own session is orphaned, not killed
        assert server.liveness() is Liveness.DEAD
        assert gen2_kids[0].is_running()
        server.restart(same_port=True)  # stop of the dead generation finds the orphan by its env tag
        assert not gen2_kids[0].is_running() or gen2_kids[0].status() == psutil.STATUS_ZOMBIE
        assert server.port == port and server.generation == 3 and server.health()["healthy"]
        first, second = server.log_paths[0].read_text(), server.log_paths[1].read_text()
        assert "requested_stop=True" in first and "fake opencode listening" in first
        assert "signal SIGKILL requested_stop=False" in second
    assert server.liveness() is Liveness.DEAD
    assert "requested_stop=True" in server.log_paths[2].read_text()
    from pytest_cbchaos.servers.opencode import tagged_processes

    assert [tagged_processes(f"{server._uid}.g{g}") for g in (1, 2, 3)] == [[], [], []]
    kinds = [w.kind for w in journal.windows()]
    assert kinds == ["pause", "restart", "kill", "restart"]
    pause = journal.windows()[0]
    assert pause.end_ns is not None and pause.end_ns >= pause.start_ns
    server.stop()  # idempotent


# -- real opencode -----------------------------------------------------------------------------------
def _turn(server: OpencodeServer, text: str, base_url: str | None = None) -> dict:
    with server.client(timeout=60, base_url=base_url) as c:
        sid = c.post("/session", json={}).json()["id"]
        assert sid.startswith("ses_")
        r = c.post(f"/session/{sid}/message", json={**PROMPT, "parts": [{"type": "text", "text": text}]})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.mark.slow
def test_normal_turn_completes_with_mock_tokens(cbchaos_opencode: OpencodeServer, cbchaos_mock_llm: MockLLM) -> None:
    server = cbchaos_opencode
    assert server.health(timeout=10)["version"] == "1.18.33"
    assert httpx.get(server.base_url + "/global/health", timeout=5).status_code == 401
    cbchaos_mock_llm.script("main", [m.tokens(["Hel", "lo ", "from ", "the mock"], delay=0.02)])
    reply = _turn(server, "please greet cbchaos-1")
    texts = [p.get("text") for p in reply["parts"] if p["type"] == "text"]
    assert texts == ["Hello from the mock"]
    finish = [p for p in reply["parts"] if p["type"] == "step-finish"]
    assert finish and finish[-1]["reason"] == "stop"
    assert reply["info"]["finish"] == "stop" and reply["info"]["time"].get("completed")
    assert cbchaos_mock_llm.last_user_text("main") == "please greet cbchaos-1"
    assert server.busy_sessions() == {}
    # isolation: allow-listed env, private HOME, no inherited OPENCODE_* (read from the live child)
    env = dict(line.split("=", 1) for line in
               Path(f"/proc/{server.pid}/environ").read_text().split("\0") if "=" in line)
    assert env["HOME"] == str(server.root / "home") and env["OPENCODE_SERVER_PASSWORD"] == server.password
    assert {k for k in env if k.startswith("OPENCODE_")} <= {
        "OPENCODE_SERVER_USERNAME", "OPENCODE_SERVER_PASSWORD", "OPENCODE_DISABLE_AUTOUPDATE",
        "OPENCODE_DISABLE_MODELS_FETCH", "OPENCODE_DISABLE_LSP_DOWNLOAD"}
    assert env["CBCHAOS_SERVER_TAG"] == f"{server._uid}.g{server.generation}"
    # offline: no npm install of config-dir dependencies into the private dirs
    assert not (server.root / "config" / "opencode" / "node_modules").exists()
    assert not (server.root / "home" / ".npm").exists()
    # the parent never holds a log handle
    assert not [f for f in os.listdir("/proc/self/fd")
                if os.path.realpath(f"/proc/self/fd/{f}").startswith(str(server.log_dir))]


@pytest.mark.slow
def test_hygiene_aborts_a_stalled_turn(cbchaos_opencode: OpencodeServer, cbchaos_mock_llm: MockLLM) -> None:
    """What the fixtures do between tests: a busy session is aborted and opencode closes the provider request."""
    from pytest_cbchaos.env import leave_clean

    server = cbchaos_opencode
    cbchaos_mock_llm.script("main", [m.text("partial "), m.stall_forever()])
    sid = server.request("POST", "/session", json={}).json()["id"]
    r = server.request("POST", f"/session/{sid}/prompt_async",
                       json={**PROMPT, "parts": [{"type": "text", "text": "stall please"}]})
    assert r.status_code == 204
    [rec] = cbchaos_mock_llm.wait_for("main", 1, timeout=60)
    deadline = time.monotonic() + 10
    while sid not in server.busy_sessions():
        assert time.monotonic() < deadline, "session never went busy"
        time.sleep(0.05)  # polling /session/status, bounded
    assert server.busy_sessions()[sid]["type"] == "busy"
    leave_clean(server, timeout=20)
    assert server.busy_sessions() == {}
    rec = cbchaos_mock_llm.wait_client_closed(rec.seq, timeout=10)
    assert rec.outcome == "client_closed"  # the abort closed the stalled provider stream


@pytest.mark.slow
def test_restart_same_port_keeps_port_and_password(cbchaos_opencode: OpencodeServer, cbchaos_mock_llm: MockLLM) -> None:
    server = cbchaos_opencode
    port, gen, password, old_pid = server.port, server.generation, server.password, server.pid
    server.pause()
    assert server.liveness() is Liveness.STOPPED
    server.restart(same_port=True)  # a stopped group is stopped too (SIGTERM + SIGCONT, then SIGKILL)
    assert server.port == port and server.generation == gen + 1 and server.password == password
    assert server.pid != old_pid and server.liveness() is Liveness.ALIVE
    previous = server.log_paths[-2].read_text()
    assert f"generation={gen} pid={old_pid}" in previous and "requested_stop=True" in previous
    assert server.log_path.name == f"opencode.g{gen + 1}.log"
    assert [f.kind for f in server.faults][-2:] == ["pause", "restart"]
    assert server.health(timeout=10)["healthy"]


@pytest.mark.slow
def test_planes_through_fault_proxy_follow_restarts(cbchaos_opencode_proxy, cbchaos_mock_llm: MockLLM) -> None:
    proxied = cbchaos_opencode_proxy
    assert proxied.base_url != proxied.direct_url and proxied.events_url != proxied.base_url
    with proxied.client(timeout=30) as c:  # control plane: REST with auth and directory header
        sid = c.post("/session", json={}).json()["id"]
        assert sid.startswith("ses_") and c.get("/session/status").json() == {}
        assert c.delete(f"/session/{sid}").json() is True
    with httpx.Client(auth=proxied.auth, headers={"x-opencode-directory": str(proxied.project_dir)},
                      timeout=httpx.Timeout(10, read=10)) as c:
        with c.stream("GET", proxied.events_url + "/event") as r:
            first = next(line for line in r.iter_lines() if line.startswith("data:"))
    assert '"server.connected"' in first
    # after a restart on a new port the proxies are re-pointed (restart() = server.restart() + sync_upstream())
    proxied.control._update({"upstream": "127.0.0.1:9"})
    proxied.sync_upstream()
    assert proxied.control.upstream == proxied.events.upstream == f"127.0.0.1:{proxied.server.port}"
    r = httpx.get(proxied.base_url + "/global/health", auth=proxied.auth, timeout=10)
    assert r.status_code == 200 and r.json()["healthy"]


ORPHAN_TEST = '''
import json, os
import pytest
from pytest_cbchaos.servers import mockllm as m

def test_turn(cbchaos_opencode, cbchaos_mock_llm):
    import psutil
    server = cbchaos_opencode
    kids = [p.pid for p in psutil.Process(server.pid).children(recursive=True)]
    with open(os.environ["CBCHAOS_TEST_OUT"], "w") as fh:
        json.dump({"pids": [server.pid, *kids], "logs": str(server.log_dir)}, fh)
'''


@pytest.mark.slow
def test_no_orphans_or_open_logs_after_session(pytester: pytest.Pytester, tmp_path: Path) -> None:
    import json

    import psutil

    pytester.makepyfile(ORPHAN_TEST)
    out = tmp_path / "out.json"
    os.environ["CBCHAOS_TEST_OUT"] = str(out)
    try:
        res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=120)
    finally:
        del os.environ["CBCHAOS_TEST_OUT"]
    res.assert_outcomes(passed=1)
    data = json.loads(out.read_text())
    alive = []
    for pid in data["pids"]:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            pass
    assert alive == [], f"opencode processes survived the session: {alive}"
    holders = []
    for proc in psutil.process_iter():
        try:
            for f in proc.open_files():
                if f.path.startswith(data["logs"]):
                    holders.append((proc.pid, f.path))
        except psutil.Error:
            continue
    assert holders == []
    logs = sorted(Path(data["logs"]).glob("opencode.g*.log"))
    assert len(logs) == 1 and "--- cbchaos exit:" in logs[0].read_text() and "requested_stop=True" in logs[0].read_text()


KILLED_SCRIPT = """
import json, sys, time
from pathlib import Path
from pytest_cbchaos.servers.opencode import OpencodeBinary, OpencodeServer
server = OpencodeServer(root=Path(sys.argv[3]), provider_url="http://127.0.0.1:9/v1", warm=False,
                        binary=OpencodeBinary(Path(sys.argv[2]), "fake")).start()
Path(sys.argv[1]).write_text(json.dumps([server.pid]))
time.sleep(120)
"""


def test_sigkilled_owner_leaves_no_server(tmp_path: Path) -> None:
    """Orphan protection through the launcher: the owning Python process is SIGKILLed; the server dies <= 5 s.

    Uses the fake server: the launcher path (ManagedProcess registration with the reaper) is the same for
    real opencode, whose group the reaper kills the same way."""
    import json
    import subprocess
    import time

    import psutil

    out = tmp_path / "pid.json"
    script = tmp_path / "owner.py"
    script.write_text(KILLED_SCRIPT)
    fake = _fake_binary(tmp_path, FAKE_SERVE.replace("if True:  # CHILD", "if False:"))
    # no tool-call child here: the reaper kills the server's group; strays outside it are found by
    # the launcher's env tag at stop(), which a SIGKILLed owner cannot run
    root = tmp_path / "root"  # in pytest's temp dir: a SIGKILLed owner cannot remove it
    root.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(fake.path), str(root)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=str(Path(__file__).resolve().parents[2]))
    try:
        deadline = time.monotonic() + 60
        while not out.exists() or not out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, "owner never started the server"
            time.sleep(0.1)  # polling for the owner's marker file, bounded
        [pid] = json.loads(out.read_text())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while True:
            try:
                gone = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            except psutil.Error:
                gone = True
            if gone:
                break
            assert time.monotonic() < deadline, f"server {pid} survived its owner's SIGKILL by 5 s"
            time.sleep(0.05)  # polling for the reaper, bounded
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _failing_binary(directory: Path) -> Path:
    fake = directory / "fake-opencode"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    return fake


def test_discovery_lists_what_it_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_cbchaos.servers import opencode as oc

    monkeypatch.delenv("CBCHAOS_OPENCODE_BIN", raising=False)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "opencode").symlink_to(_failing_binary(tmp_path))
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(oc, "_local_candidates", lambda rootdir: [(f"{rootdir}/.cbchaos-node/node_modules", None)])
    found = oc.discover_opencode(None, tmp_path)
    assert found.binary is None and found.source is None
    assert found.tried == (f"{tmp_path}/.cbchaos-node/node_modules: no opencode",
                           f"opencode found at {bindir}/opencode, `--version` failed: exit status 3")
    assert found.unusable and found.reason().startswith("opencode not usable: ") and INSTALL_HINT in found.reason()


def test_an_explicit_binary_is_exclusive_and_named_by_its_source(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_cbchaos.servers.opencode import discover_opencode

    fake = _failing_binary(tmp_path)
    monkeypatch.setenv("CBCHAOS_OPENCODE_BIN", str(fake))
    found = discover_opencode(None, tmp_path)  # the environment variable, with no fallback to .cbchaos-node
    assert found.binary is None and found.source == "CBCHAOS_OPENCODE_BIN"
    assert found.reason().startswith(f"opencode not usable: CBCHAOS_OPENCODE_BIN='{fake}': opencode found at {fake}, `--version` failed")
    assert "fix or unset CBCHAOS_OPENCODE_BIN" in found.reason() and "or pass" not in found.reason()
    found = discover_opencode(tmp_path / "nope", tmp_path, source="ini cbchaos_opencode_bin")
    assert found.tried == (f"ini cbchaos_opencode_bin='{tmp_path / 'nope'}': no such file",)


@pytest.mark.parametrize("how", ["option", "ini", "env"])
def test_opencode_fixture_skip_names_the_setting_as_given(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                          how: str) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("CBCHAOS_OPENCODE_BIN", raising=False)
    fake = _failing_binary(pytester.path)
    pytester.makepyfile("def test_x(cbchaos_opencode): pass")
    args = ["-rs", "-p", "no:cacheprovider"]
    source = {"option": "--cbchaos-opencode-bin", "ini": "ini cbchaos_opencode_bin", "env": "CBCHAOS_OPENCODE_BIN"}[how]
    if how == "option":
        args.append(f"--cbchaos-opencode-bin={fake}")
    elif how == "ini":
        pytester.makeini(f"[pytest]\ncbchaos_opencode_bin = {fake}\n")
    else:
        monkeypatch.setenv("CBCHAOS_OPENCODE_BIN", str(fake))
    result = pytester.runpytest(*args)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*opencode not usable: {source}='{fake}': opencode found at {fake}, `--version` failed*fix or unset {source}*"])
    assert "or pass --cbchaos-opencode-bin" not in result.stdout.str()
