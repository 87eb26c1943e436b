"""toxiproxy-python 0.1.1's own behaviours (docs/fault-kit-design.md#client-compatibility) against every available
backend."""

from __future__ import annotations

import urllib.parse

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists


@pytest.fixture
def toxi(tp):
    saved = (APIConsumer.host, APIConsumer.port)  # the endpoint is process-global
    url = urllib.parse.urlparse(tp.url)
    server = Toxiproxy()
    server.update_api_consumer(url.hostname, url.port)
    yield server
    APIConsumer.host, APIConsumer.port = saved


def test_create_toxics_enable_disable(toxi, echo):
    assert toxi.running()
    assert toxi.version() == b'{"version": "2.12.0"}\n'  # raw bytes, unparsed
    proxy = toxi.create(upstream=echo.address, name="py")
    assert proxy.enabled is True and proxy.listen.startswith("127.0.0.1:")
    with pytest.raises(ProxyExists):
        toxi.create(upstream=echo.address, name="py")
    assert proxy.add_toxic(type="latency", attributes={"latency": 10}) is None
    toxic = proxy.toxics()["latency_downstream"]
    assert toxic.attributes == {"latency": 10, "jitter": 0} and toxic.stream == "downstream"
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="down")
    proxy.destroy_toxic("latency_downstream")
    with pytest.raises(NotFound):
        proxy.destroy_toxic("latency_downstream")
    proxy.disable()
    assert toxi.get_proxy("py").enabled is False
    proxy.enable()
    assert toxi.get_proxy("py").enabled is True
    assert toxi.reset() is True


def test_populate_localhost_listen_forces_recreate(toxi, echo):
    proxies = toxi.populate([{"name": "pop", "upstream": echo.address, "listen": "localhost:0"}])
    assert [p.name for p in proxies] == ["pop"]
    assert toxi.get_proxy("pop").listen.startswith("127.0.0.1:")
