"""Foundation fixtures: servers, proxies in front of them, clients through the proxies, faults.

Scopes follow the design (docs/fault-kit-design.md#fixture-scopes): processes are session scoped (once per
xdist worker); clients and the fault controller are function scoped. After every test that used
them, the worker's proxies are reset (toxics removed, re-enabled) and Redis is FLUSHALLed.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
import redis.asyncio

from pytest_cbchaos.faults.controller import FaultController
from pytest_cbchaos.faults.journal import FaultJournal
from pytest_cbchaos.servers.ports import PortRangeError, allocate_port
from pytest_cbchaos.servers.redis import BackendUnavailable, RedisServer, no_async_retry, no_retry, start_redis
from pytest_cbchaos.session import worker_id
from pytest_cbchaos.settings import Settings, get_settings

_TOUCHED = pytest.StashKey[set]()  # proxies whose state a test may have changed


def _usage_exit(exc: BaseException) -> None:
    pytest.exit(f"pytest-cbchaos: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


def launch_toxiproxy(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory,
                     backend: str | None = None) -> Any:
    from pytest_cbchaos.servers.toxiproxy import BackendUnavailable as ProxyUnavailable, start_toxiproxy

    s = get_settings(config)
    try:
        return start_toxiproxy(backend or s.proxy_backend, workdir=tmp_path_factory.mktemp("cbchaos-toxiproxy"),
                               port_range=s.port_range, binary=s.toxiproxy_bin, url=s.toxiproxy_url,
                               image=s.toxiproxy_image, seed=s.seed, startup_timeout=s.startup_timeout,
                               worker=worker_id(config))
    except (ProxyUnavailable, PortRangeError) as exc:
        _usage_exit(exc)
        raise


def create_proxy(server: Any, name: str, upstream: str) -> Any:
    """A proxy on an allocated port (re-enable must rebind the same port); replaces a stale one."""
    client = server.client()
    full_name = server.proxy_name(name)
    lease = allocate_port(getattr(server, "port_range", (20000, 32767)))
    try:
        client.get_proxy(full_name).delete()
    except Exception:
        pass
    proxy = client.create_proxy(full_name, upstream, listen=f"127.0.0.1:{lease.port}")
    proxy._cbchaos_lease = lease  # held for the proxy's life
    return proxy


@pytest.fixture(scope="session")
def cbchaos_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved ``--cbchaos-*`` settings."""
    return get_settings(pytestconfig)


@pytest.fixture(scope="session")
def cbchaos_toxiproxy(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """This worker's Toxiproxy-compatible server (``ToxiproxyServer`` handle)."""
    server = launch_toxiproxy(pytestconfig, tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cbchaos_redis_proc(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """This worker's Redis server: ``host port password pid dir backend version``."""
    s = get_settings(pytestconfig)
    try:
        server = start_redis(s.redis_backend, workdir=tmp_path_factory.mktemp("cbchaos-redis"),
                             executable=s.redis_exec, url=s.redis_url, port_range=s.port_range,
                             startup_timeout=s.startup_timeout, image=s.redis_image)
    except (BackendUnavailable, PortRangeError) as exc:
        _usage_exit(exc)
        raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cbchaos_redis_proxy(cbchaos_toxiproxy: Any, cbchaos_redis_proc: RedisServer) -> Iterator[Any]:
    """A proxy named ``redis`` in front of the Redis server (reset after each test that uses it)."""
    proxy = create_proxy(cbchaos_toxiproxy, "redis", f"{cbchaos_redis_proc.host}:{cbchaos_redis_proc.port}")
    yield proxy
    try:
        proxy.delete()
    except Exception:
        pass


@pytest.fixture(scope="session")
def cbchaos_redis_admin(cbchaos_redis_proc: RedisServer) -> Iterator[redis.Redis]:
    """Direct client bypassing faults: for setup, reset and verification reads only."""
    client = cbchaos_redis_proc.client()
    yield client
    client.close()


def _client_kwargs(proxy: Any, proc: RedisServer) -> dict[str, Any]:
    return dict(host=proxy.listen_host, port=proxy.listen_port, password=proc.password,
                socket_timeout=5.0, socket_connect_timeout=5.0, retry=no_retry())


@pytest.fixture
def cbchaos_redis(cbchaos_redis_proxy: Any, cbchaos_redis_proc: RedisServer) -> Iterator[redis.Redis]:
    """redis-py through the fault proxy over TCP, authenticated."""
    client = redis.Redis(**_client_kwargs(cbchaos_redis_proxy, cbchaos_redis_proc))
    yield client
    client.close()


@pytest.fixture
def cbchaos_redis_async(cbchaos_redis_proxy: Any, cbchaos_redis_proc: RedisServer) -> Iterator[redis.asyncio.Redis]:
    """``redis.asyncio.Redis`` through the fault proxy; use it inside the test's event loop."""
    kwargs = _client_kwargs(cbchaos_redis_proxy, cbchaos_redis_proc)
    kwargs["retry"] = no_async_retry()
    client = redis.asyncio.Redis(**kwargs)
    yield client
    try:
        asyncio.run(client.aclose())
    except Exception:
        pass  # connections bound to the test's (closed) loop are dropped with it


@pytest.fixture
def cbchaos_faults(request: pytest.FixtureRequest, cbchaos_settings: Settings) -> Iterator[FaultController]:
    """Fault controller; every fault is journaled and healed at teardown."""
    journal = FaultJournal()
    controller = FaultController(journal)
    request.node.stash[FAULT_JOURNAL_KEY] = journal
    yield controller
    controller.heal_all()
    journal.close_all()


FAULT_JOURNAL_KEY = pytest.StashKey[FaultJournal]()

_toxiproxy_python_lock = threading.Lock()


@pytest.fixture
def toxiproxy_python(cbchaos_toxiproxy: Any) -> Iterator[Any]:
    """``toxiproxy.Toxiproxy()`` pointed at this worker's server (its endpoint is process-global)."""
    import urllib.parse

    from toxiproxy import Toxiproxy
    from toxiproxy.api import APIConsumer

    parsed = urllib.parse.urlparse(cbchaos_toxiproxy.url)
    with _toxiproxy_python_lock:
        saved = (APIConsumer.host, APIConsumer.port)
        client = Toxiproxy()
        client.update_api_consumer(parsed.hostname, parsed.port)
        try:
            yield client
        finally:
            for proxy in list(client.proxies().values()):
                if not proxy.name.startswith("cbchaos-") and proxy.name != "redis":
                    try:
                        proxy.destroy()
                    except Exception:
                        pass
            APIConsumer.host, APIConsumer.port = saved


@pytest.fixture(autouse=True)
def _cbchaos_per_test_reset(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the kit's session servers: heal, remove toxics, re-enable, FLUSHALL."""
    yield
    names = request.fixturenames
    if "cbchaos_redis_proxy" in names:
        proxy = request.getfixturevalue("cbchaos_redis_proxy")
        reset_proxy(proxy)
    if "cbchaos_redis_proc" in names:
        proc: RedisServer = request.getfixturevalue("cbchaos_redis_proc")
        if proc.process is not None and not proc.process.alive:
            proc.process.start()  # a test killed it: bring it back for the next test
        with proc.client() as admin:
            admin.flushall()


def reset_proxy(proxy: Any) -> None:
    """Remove this proxy's toxics and re-enable it (never a global /reset: backends may be shared)."""
    for toxic in proxy.toxics():
        proxy.remove_toxic(toxic.name)
    proxy.refresh()
    if not proxy.enabled:
        proxy.enable()
