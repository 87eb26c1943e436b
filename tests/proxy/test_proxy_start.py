"""Lean start of the embedded proxy (docs/fault-kit-design.md, "Start-up")."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from pytest_cbchaos.proxy import VERSION
from pytest_cbchaos.proxy.__main__ import bind_api
from pytest_cbchaos.servers.process import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]

# Runs the proxy's main with a gate on the aiohttp import: opening the FIFO for reading blocks until
# the test opens it for writing, so the test decides when the heavy imports may go on.
GATED_MAIN = """
import sys, importlib.abc
fifo = sys.argv.pop(1)
class Gate(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "aiohttp":
            sys.meta_path.remove(self)
            open(fifo).close()
        return None
sys.meta_path.insert(0, Gate())
from pytest_cbchaos.proxy.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_ready_is_reported_before_aiohttp_loads_and_early_requests_wait_in_the_backlog(tmp_path):
    fifo, port_file = tmp_path / "gate", tmp_path / "port"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = ManagedProcess("gated-proxy", [sys.executable, "-c", GATED_MAIN, str(fifo), "-host", "0.0.0.0",
                                          "-port", "0", "--port-file", str(port_file)],
                          log_dir=tmp_path, env=env, ready_pipe=True, startup_timeout=20.0)
    proc.start()  # returns while the child is held before (or in) its aiohttp import
    answers: list[httpx.Response] = []
    try:
        url = f"http://127.0.0.1:{port_file.read_text()}/version"
        early = threading.Thread(target=lambda: answers.append(httpx.get(url, timeout=30.0)))
        early.start()
        opener = threading.Thread(target=lambda: os.close(os.open(fifo, os.O_WRONLY)), daemon=True)
        opener.start()
        opener.join(20.0)
        assert not opener.is_alive(), "the child never reached the aiohttp import"
        early.join(30.0)
        assert answers and answers[0].status_code == 200 and answers[0].json()["version"] == VERSION
    finally:
        proc.stop()
    assert "host=127.0.0.1" in proc.log_path.read_text()  # a wildcard host binds loopback only


@pytest.mark.parametrize("host, loopback_only, bound", [("0.0.0.0", True, "127.0.0.1"), ("", True, "127.0.0.1"),
                                                        ("::", True, "127.0.0.1"), ("localhost", False, "127.0.0.1")])
def test_bind_api_keeps_wildcards_on_loopback(host, loopback_only, bound):
    sock = bind_api(host, 0, loopback_only)
    try:
        assert sock.getsockname()[0] == bound
    finally:
        sock.close()


def test_embedded_start_knows_version_and_asks_capabilities_on_use(embedded_tp):
    assert embedded_tp.version == VERSION
    assert {"cbchaos_blackhole", "cbchaos_http_fault"} <= embedded_tp.capabilities


def test_the_redis_behind_proxy_path_loads_neither_aiohttp_nor_httpx():
    """The parent's modules for a Redis session (docs/fault-kit-design.md, "Start-up"): aiohttp is the
    proxy child's and the opencode rig's; the API client is on the standard library."""
    code = ("import sys; import pytest_cbchaos.env, pytest_cbchaos.servers.toxiproxy, pytest_cbchaos.servers.process, "
            "pytest_cbchaos.proxy.client; print(sorted({'aiohttp', 'httpx'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
