"""``env.Environment``: settings -> servers, proxies and leases; per-test hygiene; nothing left at stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_cbchaos.env import Environment, Unavailable
from pytest_cbchaos.settings import Settings


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    e = Environment.from_settings(Settings.defaults(redis_backend="fakeredis"), tmp_path, worker="test")
    yield e
    e.stop()


def test_a_proxy_owns_its_port_lease(env: Environment) -> None:
    redis = env.redis()
    proxy = env.toxiproxy().create_proxy("owned", f"{redis.host}:{redis.port}")
    lease = proxy.lease
    assert lease.held and lease.port == proxy.listen_port
    proxy.delete()
    assert not lease.held and proxy.lease is None
    proxy.close()  # already deleted: still no error, nothing to release


def test_shared_objects_are_started_once_and_reset_per_test(env: Environment) -> None:
    redis = env.redis()
    assert env.redis() is redis
    proxy = env.proxy("redis", f"{redis.host}:{redis.port}")
    assert env.proxy("redis", f"{redis.host}:{redis.port}") is proxy
    proxy.add_toxic("latency", latency=100)
    proxy.disable()
    with redis.client() as admin:
        admin.set("k", "v")
    redis.process.kill()
    env.reset()
    proxy.refresh()
    assert proxy.enabled and proxy.toxics() == []
    with redis.client() as admin:  # brought back, and empty
        assert admin.dbsize() == 0


def test_a_shared_proxy_deleted_by_a_test_is_back_for_the_next(env: Environment) -> None:
    """A test that destroys the shared proxy (toxiproxy-python's ``destroy_all()`` on the worker's server)
    must not break every later test's hygiene: reset creates it again on its leased port."""
    import redis as redis_py

    server = env.redis()
    proxy = env.proxy("redis", f"{server.host}:{server.port}")
    port = proxy.listen_port
    env.toxiproxy().client().get_proxy("redis").delete()
    env.reset()
    assert env.toxiproxy().client().get_proxy("redis").listen_port == port == proxy.listen_port
    with redis_py.Redis(host=proxy.listen_host, port=port, password=server.password, socket_timeout=5) as c:
        assert c.ping()


def test_stop_releases_every_lease(env: Environment) -> None:
    redis = env.redis()
    proxy = env.proxy("redis", f"{redis.host}:{redis.port}")
    server = env.toxiproxy()
    leases = [redis.lease, proxy.lease, server.lease]
    assert all(lease.held for lease in leases)
    env.stop()
    assert not any(lease.held for lease in leases)
    with pytest.raises(Unavailable, match="stopped"):
        env.mock_llm()


def test_an_unavailable_backend_is_one_exception_type(tmp_path: Path) -> None:
    env = Environment.from_settings(Settings.defaults(redis_backend="url", redis_url=None), tmp_path)
    with pytest.raises(Unavailable):
        env.redis()
    env.stop()
