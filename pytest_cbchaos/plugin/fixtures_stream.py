"""Stream fixtures (registered by :mod:`pytest_cbchaos.plugin`).

* ``cbchaos_stream_config`` -- the documented CI profile (docs/stream-design.md#configuration) ``StreamConfig``.
* ``cbchaos_stream_store`` -- a factory: ``make(host=None, port=None) -> StreamStore`` over a new
  ``redis.asyncio`` client to ``cbchaos_redis_proc`` (make it inside your event loop); the fixture closes
  every client it made at teardown.
* ``cbchaos_stream_redis`` -- this worker's stream Redis: redis-server with AOF ``always``
  (docs/stream-design.md#restart-and-lost-suffix: SIGKILL loses no acknowledged append; ``restart()`` keeps the data),
  or the kit's Redis backend without persistence where redis-server is absent (restart tests carry
  ``requires_real_redis``). Emptied after each test; restarted if a test killed it.
* ``cbchaos_stream`` -- the harness (docs/stream-design.md#harness)
  (:class:`~pytest_cbchaos.stream.harness.StreamHarness`): the relay and the HTTP app as child processes behind
  ``redis-producer``, ``redis-consumer`` and
  ``stream-http``; faults through ``cbchaos_faults`` are journaled and healed at teardown.
* ``cbchaos_stream_factory`` -- ``make(**StreamHarness options)``: more harnesses, or mutant classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

if TYPE_CHECKING:
    from pytest_cbchaos.stream import StreamConfig, StreamStore


@pytest.fixture
def cbchaos_stream_config() -> StreamConfig:
    """The stream's documented CI profile (``StreamConfig.ci()``)."""
    from pytest_cbchaos.stream import StreamConfig

    return StreamConfig.ci()


@pytest.fixture
def cbchaos_stream_store(cbchaos_redis_proc: Any,
                         cbchaos_stream_config: StreamConfig) -> Iterator[Callable[..., StreamStore]]:
    """``make(host=None, port=None) -> StreamStore`` over a new ``redis.asyncio`` client (make it in your loop).

    The fixture owns those clients and closes them at teardown, in the loop they used while it is still
    open (``close_async_client``): a test need not, and may close one sooner (``await store.redis.aclose()``).
    Left to the test, one it forgot was dropped unclosed and reported under whichever test came next."""
    import redis.asyncio as aioredis

    from pytest_cbchaos.plugin.factories import close_async_client
    from pytest_cbchaos.stream import StreamStore

    made: list[Any] = []

    def make(host: str | None = None, port: int | None = None) -> StreamStore:
        client = aioredis.Redis(host=host or cbchaos_redis_proc.host, port=port or cbchaos_redis_proc.port,
                                password=cbchaos_redis_proc.password, socket_timeout=2.0, socket_connect_timeout=1.0)
        made.append(client)
        return StreamStore(client, cbchaos_stream_config)

    yield make
    for client in made:
        close_async_client(client)


@pytest.fixture
def cbchaos_gateway(cbchaos_redis_proc: Any, cbchaos_stream_config: StreamConfig) -> Any:
    """A `GatewayKit`: MockLLM provider + Redis; ``async with cbchaos_gateway.open() as gw: ...``."""
    from pytest_cbchaos.gateway.kit import GatewayKit
    from pytest_cbchaos.servers.mockllm import MockLLM

    mock = MockLLM(require_key=True).start()
    try:
        yield GatewayKit(redis=cbchaos_redis_proc, mock=mock, stream_config=cbchaos_stream_config)
    finally:
        mock.stop()


@pytest.fixture(scope="session")
def cbchaos_stream_redis(cbchaos_env: Any) -> Any:
    """This worker's stream Redis: redis-server with AOF ``always`` (data kept across ``restart()``)."""
    from pytest_cbchaos.plugin.factories import started

    return started(cbchaos_env.durable_redis)


@pytest.fixture
def cbchaos_stream_factory(cbchaos_stream_redis: Any, cbchaos_toxiproxy: Any, cbchaos_faults: Any,
                           cbchaos_stream_config: StreamConfig, tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """``make(**kw) -> StreamHarness`` (started): extra harnesses, other configs, or mutant classes
    (``store_class="module:Name"``, ``reaper_class=...``, ``run_class=...``, ``liveness=...``). All are
    closed and Redis is emptied at teardown."""
    from pytest_cbchaos.stream.harness import StreamHarness

    made: list[StreamHarness] = []

    def make(**kw: Any) -> StreamHarness:
        kw.setdefault("config", cbchaos_stream_config)
        kw.setdefault("faults", cbchaos_faults)
        kw.setdefault("name", f"stream{len(made) or ''}")
        harness = StreamHarness(cbchaos_stream_redis, cbchaos_toxiproxy, tmp_path / f"{kw['name']}-harness", **kw)
        made.append(harness)
        return harness.start()

    try:
        yield make
    finally:
        cbchaos_faults.heal_all()
        for harness in made:
            harness.close()  # Redis is revived and emptied by the environment's per-test hygiene


@pytest.fixture
def cbchaos_stream(cbchaos_stream_factory: Callable[..., Any]) -> Any:
    """A started stream harness: relay and HTTP app as child processes behind fault proxies."""
    return cbchaos_stream_factory()
