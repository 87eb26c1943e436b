"""Acceptance: toxiproxy-python 0.1.1 drives the embedded server; redis-py PINGs a real redis-server."""

from __future__ import annotations

import socket
import time
import urllib.parse

import pytest
import redis
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
from tests.waits import fastest_under


@pytest.fixture
def toxi(embedded_tp):
    """toxiproxy-python pointed at the embedded server; its endpoint is process-global, so restore it."""
    saved = (APIConsumer.host, APIConsumer.port)
    url = urllib.parse.urlparse(embedded_tp.url)
    server = Toxiproxy()
    server.update_api_consumer(url.hostname, url.port)
    yield server
    try:
        server.destroy_all()
    finally:
        APIConsumer.host, APIConsumer.port = saved


def ping_time(client: redis.Redis) -> float:
    start = time.monotonic()
    assert client.ping() is True
    return time.monotonic() - start


def test_latency_disable_enable_with_redis(toxi, real_redis):
    proxy = toxi.create(upstream=f"127.0.0.1:{real_redis.port}", name="redis")
    host, port = proxy.listen.rsplit(":", 1)
    client = real_redis.client(port=int(port))
    try:
        baseline = fastest_under(lambda: ping_time(client), 0.1)
        assert baseline < 0.1
        assert proxy.add_toxic(type="latency", attributes={"latency": 100}) is None  # 0.1.1 returns None
        assert "latency_downstream" in proxy.toxics()
        assert ping_time(client) >= 0.100
        proxy.destroy_toxic("latency_downstream")
        assert proxy.toxics() == {}
        assert fastest_under(lambda: ping_time(client), 0.100) < 0.100
        proxy.disable()
        client.connection_pool.disconnect()
        with pytest.raises(redis.ConnectionError):
            real_redis.client(port=int(port), retry=None).ping()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
        proxy.enable()
        assert fastest_under(lambda: ping_time(client), 0.100) < 0.100
    finally:
        client.close()


def test_client_behaviours(toxi, echo_address):
    assert toxi.running()
    assert toxi.version() == b'{"version": "2.12.0"}\n'
    proxy = toxi.create(upstream=echo_address, name="one")
    assert proxy.listen.startswith("127.0.0.1:")
    with pytest.raises(ProxyExists):
        toxi.create(upstream=echo_address, name="one")
    assert toxi.get_proxy("one").name == "one"
    assert toxi.get_proxy("absent") is None  # 0.1.1 lists proxies client-side
    with pytest.raises(NotFound):
        proxy.destroy_toxic("absent")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="nonexistent")
    proxy.add_toxic(type="latency", name="lat", attributes={"latency": 1})
    assert proxy.get_toxic("lat").attributes == {"latency": 1, "jitter": 0}
    assert toxi.reset() is True
    assert toxi.get_proxy("one").toxics() == {}
    proxies = toxi.populate([{"name": "two", "upstream": echo_address, "listen": "127.0.0.1:0"}])
    assert [p.name for p in proxies] == ["two"]
    assert set(toxi.proxies()) == {"one", "two"}
