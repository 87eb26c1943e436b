"""Fixtures for real opencode and the mock model provider (docs/opencode-design.md#fixtures,
docs/opencode-design.md#mock-provider).

* ``cbchaos_mock_llm`` (function): the worker's :class:`~pytest_cbchaos.servers.mockllm.MockLLM` (one per
  xdist worker, session-started), reset after each test: gates released, handlers awaited, scripts and
  the request log cleared. A strict-mode mock with unexpected requests fails the test at teardown.
* ``cbchaos_opencode`` (session): the worker's real ``opencode serve`` (:class:`OpencodeServer`) whose
  provider is the mock. Reused across tests; after every test that used it, a dead or stopped server is
  brought back and busy sessions are aborted, so the next test starts clean.
* ``cbchaos_opencode_proxy`` (function): :class:`OpencodeProxied` — the server's REST API (control plane)
  and ``/event`` (events plane) behind two fault-proxy listeners of ``cbchaos_toxiproxy``. It quacks like
  the server handle (``base_url`` = control URL, ``events_url``, ``auth``, ``headers``, ``liveness()``,
  ``restart()`` which re-points both proxies at the new port), so a runner can take it as its handle.

Without an opencode binary the opencode fixtures skip with the install command; with env ``CI`` set (or
``--cbchaos-require-real`` if the plugin defines it) they fail instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from pytest_cbchaos.servers.mockllm import MockLLM
from pytest_cbchaos.servers.opencode import OpencodeBinary, OpencodeServer, discover_opencode, find_opencode

_SERVER_KEY = pytest.StashKey[OpencodeServer]()


def _settings_value(config: pytest.Config, name: str, default: Any = None) -> Any:
    try:
        from pytest_cbchaos.settings import get_settings

        return getattr(get_settings(config), name, default)
    except Exception:
        return default


def _require_real(config: pytest.Config) -> bool:
    if os.environ.get("CI"):
        return True
    try:
        return bool(config.getoption("cbchaos_require_real", default=False))
    except ValueError:
        return False


def opencode_binary_or_skip(config: pytest.Config) -> OpencodeBinary:
    """The binary :func:`discover_opencode` finds from the settings; skip (fail under CI) naming what was tried."""
    explicit, source, rootdir = opencode_search(config)
    found = discover_opencode(explicit, rootdir, source=source)
    if found.binary is None:
        if _require_real(config):
            pytest.fail(f"{found.reason()} (required: CI is set)", pytrace=False)
        pytest.skip(found.reason())
    return find_opencode(explicit, rootdir, source=source) or found.binary


def opencode_search(config: pytest.Config) -> tuple[str | None, str, Path]:
    """(explicit binary, the setting that named it, rootdir) for :func:`discover_opencode`."""
    try:
        from pytest_cbchaos.settings import get_settings

        s = get_settings(config)
        return s.opencode_bin, s.source("opencode_bin"), Path(str(config.rootpath))
    except Exception:
        return None, "--cbchaos-opencode-bin", Path(str(config.rootpath))


@pytest.fixture(scope="session")
def cbchaos_mock_llm_server() -> Iterator[MockLLM]:
    """The worker's mock provider process-wide; prefer ``cbchaos_mock_llm`` in tests."""
    mock = MockLLM().start()
    yield mock
    mock.stop()


def _uses_opencode(request: pytest.FixtureRequest) -> bool:
    return any(n in request.fixturenames for n in ("cbchaos_opencode", "cbchaos_opencode_proxy"))


@pytest.fixture
def cbchaos_mock_llm(request: pytest.FixtureRequest, cbchaos_mock_llm_server: MockLLM) -> Iterator[MockLLM]:
    """Scriptable OpenAI-compatible provider, reset after the test.

    Teardown releases every gate and checks that no request stays open (with opencode in the test, that
    check runs after the server's busy sessions were aborted, in the hygiene fixture)."""
    mock = cbchaos_mock_llm_server
    mock.reset()
    mock.strict = False
    yield mock
    unexpected = mock.unexpected
    strict = mock.strict
    mock.release_all()
    mock.strict = False
    if strict and unexpected:
        mock.reset()
        pytest.fail(f"mock LLM (strict) got unscripted requests: {[(r.seq, r.kind) for r in unexpected]}",
                    pytrace=False)
    if not _uses_opencode(request):
        _check_mock_idle(mock)


def _check_mock_idle(mock: MockLLM, timeout: float = 5.0) -> None:
    try:
        mock.wait_idle(timeout)
    except TimeoutError as exc:
        pytest.fail(f"mock LLM teardown: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def cbchaos_opencode(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory,
                     cbchaos_mock_llm_server: MockLLM) -> Iterator[OpencodeServer]:
    """The worker's real ``opencode serve`` pointed at the mock provider (reused; kept clean per test)."""
    binary = opencode_binary_or_skip(pytestconfig)
    timeout = max(30.0, float(_settings_value(pytestconfig, "startup_timeout", 30.0) or 30.0))
    port_range = _settings_value(pytestconfig, "port_range", None) or (20000, 32767)
    server = OpencodeServer(root=tmp_path_factory.mktemp("cbchaos-opencode"), binary=binary,
                            provider_url=cbchaos_mock_llm_server.base_url,
                            provider_key=cbchaos_mock_llm_server.api_key, startup_timeout=timeout,
                            port_range=tuple(port_range))
    server.start()
    pytestconfig.stash[_SERVER_KEY] = server
    try:
        yield server
    finally:
        if _SERVER_KEY in pytestconfig.stash:
            del pytestconfig.stash[_SERVER_KEY]
        server.stop()


def leave_clean(server: OpencodeServer, timeout: float = 10.0) -> None:
    """Bring a killed/stopped server back and abort busy sessions (between tests)."""
    live = server.liveness().value
    if live == "stopped":
        server.resume()
    if live in ("dead", "unknown") or not server.alive:
        server.restart()
        return
    try:
        server.abort_all(timeout)
    except Exception:
        server.restart()  # a server that cannot settle its sessions is replaced


@pytest.fixture(autouse=True)
def _cbchaos_opencode_hygiene(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used ``cbchaos_opencode``: the next test gets a live server with no busy session."""
    yield
    names = request.fixturenames
    if "cbchaos_opencode" not in names and "cbchaos_opencode_proxy" not in names:
        return
    server = request.config.stash.get(_SERVER_KEY, None)
    mock = request.getfixturevalue("cbchaos_mock_llm_server") if "cbchaos_mock_llm_server" in names else None
    if mock is not None:
        mock.release_all()
    if server is not None:
        leave_clean(server)
    if mock is not None:
        _check_mock_idle(mock)


class OpencodeProxied:
    """The server reached through two fault-proxy listeners; usable as a runner's server handle."""

    def __init__(self, server: OpencodeServer, control: Any, events: Any) -> None:
        self.server = server
        self.control = control
        self.events = events

    # handle protocol (recovery/handle.py reads these)
    @property
    def base_url(self) -> str:
        return f"http://{self.control.listen_host}:{self.control.listen_port}"

    @property
    def control_url(self) -> str:
        return self.base_url

    @property
    def events_url(self) -> str:
        return f"http://{self.events.listen_host}:{self.events.listen_port}"

    @property
    def direct_url(self) -> str:
        return self.server.base_url

    def __getattr__(self, name: str) -> Any:  # auth, headers, password, project_dir, pid, generation, ...
        return getattr(self.server, name)

    def liveness(self) -> Any:
        return self.server.liveness()

    def sync_upstream(self) -> None:
        """Point both proxies at the server's current port (after a restart on a new port)."""
        upstream = f"127.0.0.1:{self.server.port}"
        for proxy in (self.control, self.events):
            if proxy.upstream != upstream:
                proxy._update({"upstream": upstream})

    def restart(self, **kw: Any) -> "OpencodeProxied":
        self.server.restart(**kw)
        self.sync_upstream()
        return self

    def client(self, timeout: float = 10.0) -> Any:
        return self.server.client(timeout, base_url=self.base_url)


@pytest.fixture(scope="session")
def _cbchaos_opencode_proxies(cbchaos_toxiproxy: Any, cbchaos_opencode: OpencodeServer) -> Iterator[tuple[Any, Any]]:
    from pytest_cbchaos.fixtures import create_proxy

    upstream = f"127.0.0.1:{cbchaos_opencode.port}"
    control = create_proxy(cbchaos_toxiproxy, "opencode-control", upstream)
    events = create_proxy(cbchaos_toxiproxy, "opencode-events", upstream)
    yield control, events
    for proxy in (control, events):
        try:
            proxy.delete()
        except Exception:
            pass
        lease = getattr(proxy, "_cbchaos_lease", None)
        if lease is not None:
            lease.release()


@pytest.fixture
def cbchaos_opencode_proxy(_cbchaos_opencode_proxies: tuple[Any, Any],
                           cbchaos_opencode: OpencodeServer) -> Iterator[OpencodeProxied]:
    """Control and events planes of ``cbchaos_opencode`` behind the fault proxy (toxics reset per test)."""
    from pytest_cbchaos.fixtures import reset_proxy

    control, events = _cbchaos_opencode_proxies
    proxied = OpencodeProxied(cbchaos_opencode, control, events)
    proxied.sync_upstream()
    yield proxied
    for proxy in (control, events):
        try:
            reset_proxy(proxy)
            if not proxy.enabled:
                proxy.enable()
        except Exception:
            pass
    if cbchaos_opencode.alive:
        proxied.sync_upstream()
