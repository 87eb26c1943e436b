"""Conformance matrix: the same assertions against every available Toxiproxy backend.

``embedded`` always runs; ``binary`` runs when ``toxiproxy-server`` is on PATH, ``url`` when
TOXIPROXY_URL is set, ``docker`` when an engine answers; otherwise they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.servers.toxiproxy import ToxiproxyServer, start_toxiproxy

from pytest_cbchaos.proxy.testkit import EchoServer, raw


def _skip_reason(backend: str) -> str | None:
    if backend == "binary" and not shutil.which("toxiproxy-server"):
        return "toxiproxy-server is not on PATH (no package ships it; see the README)"
    if backend == "url" and not os.environ.get("TOXIPROXY_URL"):
        return "TOXIPROXY_URL is not set"
    if backend == "docker":
        from pytest_cbchaos.servers.docker_backend import engine_or_skip_reason
        return engine_or_skip_reason()
    return None


@pytest.fixture(scope="session", params=["embedded", "binary", "url", "docker"])
def tp_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToxiproxyServer]:
    reason = _skip_reason(request.param)
    if reason:
        pytest.skip(f"backend {request.param}: {reason}")
    server = start_toxiproxy(request.param, workdir=tmp_path_factory.mktemp(f"tp-{request.param}"), seed=1234)
    yield server
    server.stop()


@pytest.fixture
def tp(tp_server: ToxiproxyServer) -> Iterator[ToxiproxyServer]:
    """The server, with every proxy deleted after the test (these servers are private to the test run)."""
    yield tp_server
    response = raw(tp_server.url, "GET", "/proxies")
    for name in response.json():
        raw(tp_server.url, "DELETE", f"/proxies/{name}")


@pytest.fixture(scope="session")
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def free_port() -> Iterator[int]:
    lease = allocate_port()
    yield lease.port
    lease.release()
