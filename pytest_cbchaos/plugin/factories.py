"""Factories for extra instances (stable public API, re-exported as ``pytest_cbchaos.factories``;
keyword-only arguments).

    from pytest_cbchaos import factories
    redis_b = factories.redis_proc(name="redis_b")
    proxy_b = factories.proxy("redis_b", name="redis-b")
    client_b = factories.redis_client("proxy_b")

Each call returns a pytest fixture function; assign it to a module-level name in a conftest
or test module to use it (the kit's own ``cbchaos_redis`` is ``redis_client("cbchaos_redis_proxy")``).
Process-backed fixtures are session scoped by default; the servers come
from the worker's environment (``cbchaos_env``) and are stopped with the fixture.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, TypeVar

import pytest
import redis

from pytest_cbchaos.env import Unavailable

Scope = Literal["session", "package", "module", "class", "function"]
T = TypeVar("T")


def started(make: Callable[[], T]) -> T:
    """``make()``; a server the settings ask for that cannot start is a usage error (exit 4), not a test error."""
    try:
        return make()
    except Unavailable as exc:
        pytest.exit(f"pytest-cbchaos: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
        raise


def redis_proc(*, name: str = "redis", backend: str | None = None, scope: Scope = "session") -> Any:
    """A Redis server fixture (descriptor like ``cbchaos_redis_proc``)."""

    @pytest.fixture(scope=scope)
    def _redis_proc(request: pytest.FixtureRequest) -> Any:
        env = request.getfixturevalue("cbchaos_env")
        server = started(lambda: env.launch_redis(backend, name=name))
        yield server
        server.stop()

    return _redis_proc


def toxiproxy(*, backend: str | None = None, scope: Scope = "session") -> Any:
    """A Toxiproxy-compatible server fixture (a ``ToxiproxyServer`` handle)."""

    @pytest.fixture(scope=scope)
    def _toxiproxy(request: pytest.FixtureRequest) -> Any:
        env = request.getfixturevalue("cbchaos_env")
        server = started(lambda: env.launch_toxiproxy(backend))
        yield server
        server.stop()

    return _toxiproxy


def proxy(upstream_fixture: str, *, name: str, toxiproxy_fixture: str = "cbchaos_toxiproxy",
          scope: Scope = "session") -> Any:
    """A proxy named ``name`` in front of another fixture's ``host``/``port`` (e.g. a Redis descriptor)."""

    @pytest.fixture(scope=scope)
    def _proxy(request: pytest.FixtureRequest) -> Any:
        upstream = request.getfixturevalue(upstream_fixture)
        server = request.getfixturevalue(toxiproxy_fixture)
        proxy_obj = server.create_proxy(name, f"{upstream.host}:{upstream.port}")
        yield proxy_obj
        proxy_obj.close()

    return _proxy


def redis_client(proxy_fixture: str, *, proc_fixture: str = "cbchaos_redis_proc", scope: Scope = "function",
                 **client_kwargs: Any) -> Any:
    """A redis-py client through ``proxy_fixture``, authenticated with ``proc_fixture``'s password."""

    @pytest.fixture(scope=scope)
    def _client(request: pytest.FixtureRequest) -> Any:
        """redis-py through the fault proxy over TCP, authenticated."""
        proxy_obj = request.getfixturevalue(proxy_fixture)
        proc = request.getfixturevalue(proc_fixture)
        from pytest_cbchaos.servers.redis import no_retry

        kwargs = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0, "retry": no_retry(), **client_kwargs}
        client = redis.Redis(host=proxy_obj.listen_host, port=proxy_obj.listen_port, password=proc.password, **kwargs)
        yield client
        client.close()

    return _client



def started_or_skip(make: Callable[[], T]) -> T:
    """``make()``; a server this machine cannot provide skips the test (fails under CI, ``Unavailable.required``)."""
    try:
        return make()
    except Unavailable as exc:
        if exc.required:
            pytest.fail(f"pytest-cbchaos: {exc}", pytrace=False)
        pytest.skip(f"pytest-cbchaos: {exc}")
        raise


def redis_sentinel(*, replicas: int = 2, down_after_ms: int = 500, failover_timeout_ms: int = 2000,
                   scope: Scope = "session") -> Any:
    """A Sentinel topology of its own (``SentinelTopology``, docs/redis-topologies.md), stopped with the fixture;
    skips where redis-server 7.0+ is missing."""

    @pytest.fixture(scope=scope)
    def _sentinel(request: pytest.FixtureRequest) -> Any:
        env = request.getfixturevalue("cbchaos_env")
        topo = started_or_skip(lambda: env.launch_sentinel(replicas=replicas, down_after_ms=down_after_ms,
                                                           failover_timeout_ms=failover_timeout_ms))
        yield topo
        topo.stop()

    return _sentinel
