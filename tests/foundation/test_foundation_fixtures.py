"""The foundation fixtures against the real components: redis-server (or fakeredis) behind the embedded proxy."""

import time

import pytest
import redis
from tests.waits import fastest_under


def test_redis_client_goes_through_the_proxy(cbchaos_redis, cbchaos_redis_proxy, cbchaos_redis_proc):
    assert cbchaos_redis.ping()
    assert cbchaos_redis.connection_pool.connection_kwargs["port"] == cbchaos_redis_proxy.listen_port
    assert cbchaos_redis_proxy.listen_port != cbchaos_redis_proc.port
    assert cbchaos_redis_proxy.listen_host == "127.0.0.1"


def ping_time(client: redis.Redis) -> float:
    start = time.monotonic()
    assert client.ping()
    return time.monotonic() - start


SHORT_TIMEOUT = 0.1  # the bound under the 200 ms latency: the reply cannot come in time, however fast the box
ANSWERED_WITHIN_S = 10.0  # a fault-free ping through the short-bound client is waited for up to this


def answered(client: redis.Redis) -> bool:
    """A fault-free ping, waited for rather than timed: a reply the box made later than the client's short
    bound is asked for again (bounded), so only a fault that stays (an unhealed latency) fails it."""
    deadline = time.monotonic() + ANSWERED_WITHIN_S
    while True:
        try:
            return client.ping()
        except redis.TimeoutError:
            if time.monotonic() > deadline:
                raise


def test_readme_example_latency_makes_a_short_timeout_fire(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults):
    client = redis.Redis(host=cbchaos_redis_proxy.listen_host, port=cbchaos_redis_proxy.listen_port,
                         password=cbchaos_redis_proc.password, socket_timeout=SHORT_TIMEOUT, retry=None)
    assert answered(client)  # connected before the fault
    with cbchaos_faults.latency(cbchaos_redis_proxy, ms=200):
        with pytest.raises(redis.TimeoutError):
            client.ping()
    client.connection_pool.disconnect()
    assert answered(client)  # healed: the same short-bound client answers again
    assert [w.kind for w in cbchaos_faults.journal.windows()] == ["toxic:latency"]
    client.close()


def test_latency_adds_at_least_its_delay(cbchaos_redis, cbchaos_redis_proxy, cbchaos_faults):
    cbchaos_redis.ping()
    with cbchaos_faults.latency(cbchaos_redis_proxy, ms=100):
        t0 = time.monotonic()
        cbchaos_redis.ping()
        assert time.monotonic() - t0 >= 0.1


def test_down_refuses_and_heal_restores(cbchaos_redis, cbchaos_redis_proxy, cbchaos_faults):
    with cbchaos_faults.down(cbchaos_redis_proxy):
        cbchaos_redis.connection_pool.disconnect()
        with pytest.raises(redis.ConnectionError):
            cbchaos_redis.ping()
    assert cbchaos_redis.ping()


def test_toxics_do_not_leak_into_the_next_test_part1(cbchaos_redis_proxy, cbchaos_redis, cbchaos_redis_admin):
    cbchaos_redis_proxy.add_toxic("latency", latency=50)  # deliberately not removed
    cbchaos_redis.set("leak", "1")
    cbchaos_redis_proxy.disable()


def test_toxics_do_not_leak_into_the_next_test_part2(cbchaos_redis_proxy, cbchaos_redis, cbchaos_redis_admin):
    assert cbchaos_redis_proxy.toxics() == []
    assert cbchaos_redis.ping()
    assert cbchaos_redis_admin.get("leak") is None


def test_process_pause_makes_requests_hang_then_execute(cbchaos_redis_proc, cbchaos_redis_admin, cbchaos_faults):
    client = cbchaos_redis_proc.client(socket_timeout=0.2)
    assert answered(client)  # connected and authenticated before the pause, so SET itself is what gets queued
    with cbchaos_faults.process(cbchaos_redis_proc).pause():
        with pytest.raises(redis.TimeoutError):
            client.set("queued", "1")  # indeterminate: executes after resume
    deadline = time.monotonic() + 5
    while cbchaos_redis_admin.get("queued") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cbchaos_redis_admin.get("queued") == b"1"
    client.close()


def test_restart_keeps_the_port_and_loses_data(cbchaos_redis_proc, cbchaos_redis_admin, cbchaos_faults):
    cbchaos_redis_admin.set("k", "v")
    port = cbchaos_redis_proc.port
    cbchaos_faults.process(cbchaos_redis_proc).restart()
    assert cbchaos_redis_proc.port == port
    cbchaos_redis_admin.connection_pool.disconnect()
    assert cbchaos_redis_admin.get("k") is None


def test_async_client_goes_through_the_proxy(cbchaos_redis_async, cbchaos_redis_proxy):
    import asyncio

    async def main():
        assert await cbchaos_redis_async.ping()
        await cbchaos_redis_async.aclose()

    asyncio.run(main())


def test_toxiproxy_python_latency_and_disable(toxiproxy_python, cbchaos_redis_proc):
    proxy = toxiproxy_python.create(upstream=f"127.0.0.1:{cbchaos_redis_proc.port}", name="tp-redis")
    host, port = proxy.listen.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), password=cbchaos_redis_proc.password, socket_timeout=5,
                         retry=None)
    try:
        client.ping()
        proxy.add_toxic(type="latency", attributes={"latency": 100})
        t0 = time.monotonic()
        client.ping()
        assert time.monotonic() - t0 >= 0.1
        proxy.destroy_toxic("latency_downstream")
        assert fastest_under(lambda: ping_time(client), 0.1) < 0.1  # the latency is gone
        proxy.disable()
        client.connection_pool.disconnect()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        proxy.enable()
        assert client.ping()
    finally:
        client.close()
        proxy.destroy()


def test_toxiproxy_python_teardown_removes_only_what_the_test_created(pytester: pytest.Pytester) -> None:
    """The fixture's cleanup must not delete the worker's shared proxies (e.g. the opencode rig's), which
    later tests use: it removes only the proxies that appeared during the test."""
    pytester.makepyfile(test_two='''
import pytest

@pytest.fixture(scope="session")
def shared(cbchaos_toxiproxy, cbchaos_redis_proc):  # a session proxy the kit's hygiene does not manage
    return cbchaos_toxiproxy.client().create_proxy("shared-x", f"{cbchaos_redis_proc.host}:{cbchaos_redis_proc.port}")

def test_creates(shared, toxiproxy_python, cbchaos_redis_proc):
    toxiproxy_python.create(upstream=f"{cbchaos_redis_proc.host}:{cbchaos_redis_proc.port}", name="mine")

def test_after(shared, cbchaos_toxiproxy):
    names = {getattr(p, "name", p) for p in cbchaos_toxiproxy.client().proxies()}
    assert "shared-x" in names and "mine" not in names, names
''')
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
