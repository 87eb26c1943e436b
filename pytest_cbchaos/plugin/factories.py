"""Fixture factories (stable public API, re-exported as ``pytest_cbchaos.factories``; keyword-only
arguments). Each call returns a pytest fixture function; assign it to a module-level name in a
conftest or test module, and that name is the fixture (as with pytest-redis):

    from pytest_cbchaos import factories
    redis_b = factories.redis_proc(name="redis_b")
    proxy_b = factories.proxy("redis_b", name="redis-b")
    client_b = factories.redis_client("proxy_b", proc_fixture="redis_b")

The kit's default fixtures are these factories' outputs with ``shared=True``: the worker's own servers
from its environment (``cbchaos_env``), kept clean by the per-test hygiene and stopped with the
environment. Without ``shared`` a factory starts a new instance that the fixture stops at its end.
Process-backed fixtures are session scoped by default, clients function scoped (README, "Fixture factories").
"""

from __future__ import annotations

from typing import Any, Callable, Literal, TypeVar

import pytest

Scope = Literal["session", "package", "module", "class", "function"]
T = TypeVar("T")


def started(make: Callable[[], T]) -> T:
    """``make()``; a server the settings ask for that cannot start is a usage error (exit 4), not a test error."""
    from pytest_cbchaos.env import Unavailable

    try:
        return make()
    except Unavailable as exc:
        pytest.exit(f"pytest-cbchaos: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
        raise


def started_or_skip(make: Callable[[], T]) -> T:
    """``make()``; a server this machine cannot provide (no binary) skips the test with the reason and the
    install hint, and fails it when CI is set (``Unavailable.required``)."""
    from pytest_cbchaos.env import Unavailable

    try:
        return make()
    except Unavailable as exc:
        if exc.required:
            pytest.fail(f"{exc} (required: CI is set)", pytrace=False)
        pytest.skip(str(exc))



def _env(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("cbchaos_env")


def redis_proc(*, name: str = "redis", backend: str | None = None, scope: Scope = "session",
               shared: bool = False) -> Any:
    """A Redis server fixture: ``host port password pid dir backend version``, ``.client()``, ``.restart()``."""

    @pytest.fixture(scope=scope)
    def _redis_proc(request: pytest.FixtureRequest) -> Any:
        """A real redis-server (``host port password pid dir backend version``); the worker's own when shared."""
        env = _env(request)
        if shared:
            yield started(lambda: env.redis(backend))
            return
        server = started(lambda: env.launch_redis(backend, name=name))
        yield server
        server.stop()

    return _redis_proc


def toxiproxy(*, backend: str | None = None, scope: Scope = "session", shared: bool = False) -> Any:
    """A Toxiproxy-compatible server fixture (a ``ToxiproxyServer`` handle: ``.url``, ``.create_proxy()``)."""

    @pytest.fixture(scope=scope)
    def _toxiproxy(request: pytest.FixtureRequest) -> Any:
        """A Toxiproxy-compatible fault proxy server (HTTP API); the worker's own when shared."""
        env = _env(request)
        if shared:
            yield started(env.toxiproxy)
            return
        server = started(lambda: env.launch_toxiproxy(backend))
        yield server
        server.stop()

    return _toxiproxy


def proxy(upstream_fixture: str, *, name: str, toxiproxy_fixture: str = "cbchaos_toxiproxy",
          scope: Scope = "session", shared: bool = False) -> Any:
    """A proxy named ``name`` in front of another fixture's ``host``/``port`` (e.g. a Redis descriptor).

    ``shared``: the environment's proxy of that name on its own server, reset after every test that uses it."""

    @pytest.fixture(scope=scope)
    def _proxy(request: pytest.FixtureRequest) -> Any:
        """A fault proxy in front of the upstream fixture's ``host:port`` (toxics reset per test when shared)."""
        # the proxy server first: it reports ready before its imports end, which overlap the upstream's start
        server = started(_env(request).toxiproxy) if shared else request.getfixturevalue(toxiproxy_fixture)
        upstream = request.getfixturevalue(upstream_fixture)
        if shared:
            env = _env(request)
            yield started(lambda: env.proxy(name, f"{upstream.host}:{upstream.port}"))
            return
        proxy_obj = server.create_proxy(name, f"{upstream.host}:{upstream.port}")
        yield proxy_obj
        proxy_obj.close()

    return _proxy


def _client_kwargs(request: pytest.FixtureRequest, proxy_fixture: str, proc_fixture: str,
                   client_kwargs: dict[str, Any]) -> dict[str, Any]:
    proxy_obj = request.getfixturevalue(proxy_fixture)
    proc = request.getfixturevalue(proc_fixture)
    return {"host": proxy_obj.listen_host, "port": proxy_obj.listen_port, "password": proc.password,
            "socket_timeout": 5.0, "socket_connect_timeout": 5.0, **client_kwargs}


def redis_client(proxy_fixture: str, *, proc_fixture: str = "cbchaos_redis_proc", scope: Scope = "function",
                 **client_kwargs: Any) -> Any:
    """A redis-py client through ``proxy_fixture``, authenticated with ``proc_fixture``'s password (no retries)."""

    @pytest.fixture(scope=scope)
    def _client(request: pytest.FixtureRequest) -> Any:
        """redis-py through the fault proxy over TCP, authenticated."""
        kwargs = _client_kwargs(request, proxy_fixture, proc_fixture, client_kwargs)  # servers first: see proxy()
        import redis

        from pytest_cbchaos.servers.redis import no_retry

        client = redis.Redis(**{"retry": no_retry(), **kwargs})
        yield client
        client.close()

    return _client


def redis_async_client(proxy_fixture: str, *, proc_fixture: str = "cbchaos_redis_proc", scope: Scope = "function",
                       **client_kwargs: Any) -> Any:
    """``redis.asyncio.Redis`` through ``proxy_fixture`` (no retries); use it inside the test's event loop."""

    @pytest.fixture(scope=scope)
    def _async_client(request: pytest.FixtureRequest) -> Any:
        """redis.asyncio through the fault proxy over TCP, authenticated."""
        kwargs = _client_kwargs(request, proxy_fixture, proc_fixture, client_kwargs)
        import redis.asyncio

        from pytest_cbchaos.servers.redis import no_async_retry

        client = redis.asyncio.Redis(**{"retry": no_async_retry(), **kwargs})
        yield client
        close_async_client(client)

    return _async_client


def close_async_client(client: Any) -> None:
    """Close an asyncio client after its test, in the event loop its connections were made in while that
    loop is open (a module- or session-scoped loop), else in a new one: a function-scoped loop is closed
    before this teardown, and the connections made in it are dropped with it."""
    import asyncio

    pool = client.connection_pool
    loops = {getattr(getattr(getattr(conn, "_writer", None), "transport", None), "_loop", None)
             for conn in [*pool._available_connections, *pool._in_use_connections]}
    loop = next((lp for lp in loops if lp is not None and not lp.is_closed() and not lp.is_running()), None)
    try:
        if loop is not None:
            loop.run_until_complete(client.aclose())
        else:
            asyncio.run(client.aclose())
    except Exception:
        pass  # connections bound to a closed loop are dropped with it


def mock_llm(*, scope: Scope = "session", shared: bool = False, **mock_kwargs: Any) -> Any:
    """A scriptable OpenAI-compatible model provider (``MockLLM``; ``mock_kwargs`` such as ``strict=True``)."""

    @pytest.fixture(scope=scope)
    def _mock_llm(request: pytest.FixtureRequest) -> Any:
        """A scriptable OpenAI-compatible model provider (``MockLLM``); the worker's own when shared."""
        if shared:
            yield _env(request).mock_llm()
            return
        from pytest_cbchaos.servers.mockllm import MockLLM

        mock = MockLLM(**mock_kwargs).start()
        yield mock
        mock.release_all()
        mock.stop()

    return _mock_llm


def opencode(*, mock_fixture: str = "cbchaos_mock_llm_server", name: str = "opencode", scope: Scope = "session",
             shared: bool = False) -> Any:
    """A real ``opencode serve`` (``OpencodeServer``) whose model provider is ``mock_fixture``.

    ``shared``: the server of the environment's opencode rig (on the rig's own mock; docs/opencode.md).
    Without an opencode binary the test skips with the install command (fails when CI is set)."""

    @pytest.fixture(scope=scope)
    def _opencode(request: pytest.FixtureRequest) -> Any:
        """A real ``opencode serve`` on the mock provider; the worker's own rig when shared (kept clean per test)."""
        env = _env(request)
        if shared:
            yield started_or_skip(env.opencode).server
            return
        mock = request.getfixturevalue(mock_fixture)
        server = started_or_skip(lambda: env.launch_opencode(mock, name=name))
        yield server
        server.stop()

    return _opencode


def redis_sentinel(*, replicas: int = 2, down_after_ms: int = 500, failover_timeout_ms: int = 2000,
                   scope: Scope = "session") -> Any:
    """A Sentinel topology of its own (``SentinelTopology``, docs/redis-topologies.md), stopped with the fixture;
    skips where redis-server 7.0+ is missing."""

    @pytest.fixture(scope=scope)
    def _sentinel(request: pytest.FixtureRequest) -> Any:
        env = _env(request)
        topo = started_or_skip(lambda: env.launch_sentinel(replicas=replicas, down_after_ms=down_after_ms,
                                                           failover_timeout_ms=failover_timeout_ms))
        yield topo
        topo.stop()

    return _sentinel
