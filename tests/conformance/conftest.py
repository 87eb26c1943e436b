"""Conformance matrix: the same assertions against every available Toxiproxy backend.

``embedded`` always runs; ``binary`` runs when ``--cbchaos-toxiproxy-bin`` names one or
``toxiproxy-server`` is on PATH, ``url`` when ``--cbchaos-toxiproxy-url`` or TOXIPROXY_URL is set,
``docker`` when an engine answers (with ``--cbchaos-toxiproxy-image``); otherwise they are skipped
with the reason, except the backend chosen with ``--cbchaos-proxy-backend``, which fails.
"""

from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.settings import Settings, get_settings
from pytest_cbchaos.servers.toxiproxy import ToxiproxyServer, start_toxiproxy

from pytest_cbchaos.proxy.testkit import EchoServer, raw


def _skip_reason(backend: str, settings: Settings) -> str | None:
    if backend == "binary" and not (settings.toxiproxy_bin or shutil.which("toxiproxy-server")):
        return "toxiproxy-server is not on PATH and --cbchaos-toxiproxy-bin is not set (no package ships it; see the README)"
    if backend == "url" and not (settings.toxiproxy_url or os.environ.get("TOXIPROXY_URL")):
        return "neither --cbchaos-toxiproxy-url nor TOXIPROXY_URL is set"
    if backend == "docker":
        from pytest_cbchaos.servers.docker_backend import engine_or_skip_reason
        return engine_or_skip_reason()
    return None


@pytest.fixture(scope="session", params=["embedded", "binary", "url", "docker"])
def tp_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToxiproxyServer]:
    """Each backend, configured by the same options as every fixture (binary path, URL, image).
    The backend chosen with ``--cbchaos-proxy-backend`` must run: unavailable, it fails."""
    settings = get_settings(request.config)
    reason = _skip_reason(request.param, settings)
    if reason:
        message = f"backend {request.param}: {reason}"
        if request.param == settings.proxy_backend:
            pytest.fail(f"{message} (chosen with --cbchaos-proxy-backend)", pytrace=False)
        pytest.skip(message)
    server = start_toxiproxy(request.param, workdir=tmp_path_factory.mktemp(f"tp-{request.param}"), seed=1234,
                             binary=settings.toxiproxy_bin, url=settings.toxiproxy_url,
                             image=settings.toxiproxy_image)
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
