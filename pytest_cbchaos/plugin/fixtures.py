"""Foundation fixtures: thin adapters over the worker's :class:`~pytest_cbchaos.env.Environment`.

Scopes: processes are session scoped (once per xdist worker); clients and the fault controller are
function scoped. After every test that used the kit's servers, the environment's per-test hygiene runs
(toxics removed, proxies re-enabled, a killed Redis brought back, FLUSHALL, opencode left clean); it is a
teardown hook, not an autouse fixture, so a test that uses no cbchaos fixture gets nothing added.
Heavy imports (redis-py, the servers) happen inside the fixtures (docs/architecture.md, "Zero cost until used").
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generator, Iterator

import pytest

from pytest_cbchaos.plugin import factories
from pytest_cbchaos.plugin.keys import ENV_KEY, FAULT_JOURNAL_KEY
from pytest_cbchaos.plugin.session import worker_id
from pytest_cbchaos.settings import Settings, get_settings

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from pytest_cbchaos.env import Environment
    from pytest_cbchaos.faults.controller import FaultController
    from pytest_cbchaos.faults.journal import FaultJournal
    from pytest_cbchaos.servers.redis import RedisServer

# fixtures whose use makes the per-test hygiene run
ENV_FIXTURES = frozenset({"cbchaos_env", "cbchaos_toxiproxy", "cbchaos_redis_proc", "cbchaos_redis_proxy",
                          "cbchaos_stream_redis", "cbchaos_mock_llm_server", "cbchaos_opencode",
                          "cbchaos_opencode_proxy"})


@pytest.fixture(scope="session")
def cbchaos_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved ``--cbchaos-*`` settings."""
    return get_settings(pytestconfig)


@pytest.fixture(scope="session")
def cbchaos_env(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    """This worker's environment: every server, proxy and port lease of the fixtures comes from it."""
    from pytest_cbchaos.env import Environment

    env = Environment.from_settings(get_settings(pytestconfig), tmp_path_factory.mktemp("cbchaos"),
                                    rootdir=Path(str(pytestconfig.rootpath)), worker=worker_id(pytestconfig))
    pytestconfig.stash[ENV_KEY] = env
    try:
        yield env
    finally:
        del pytestconfig.stash[ENV_KEY]
        env.stop()


# The default server fixtures are the public factories' outputs (docs: README "Fixture factories").
cbchaos_toxiproxy = factories.toxiproxy(shared=True)
cbchaos_redis_proc = factories.redis_proc(shared=True)
cbchaos_redis_proxy = factories.proxy("cbchaos_redis_proc", name="redis", shared=True)


@pytest.fixture(scope="session")
def cbchaos_redis_admin(cbchaos_redis_proc: RedisServer) -> Iterator[redis.Redis]:
    """Direct client bypassing faults: for setup, reset and verification reads only."""
    client = cbchaos_redis_proc.client()
    yield client
    client.close()


cbchaos_redis = factories.redis_client("cbchaos_redis_proxy")
cbchaos_redis_async = factories.redis_async_client("cbchaos_redis_proxy")


@pytest.fixture
def cbchaos_faults(request: pytest.FixtureRequest, cbchaos_settings: Settings) -> Iterator[FaultController]:
    """Fault controller: latency, partition, down, process(x).pause/kill, …; journaled, healed at teardown."""
    from pytest_cbchaos.faults.controller import FaultController
    from pytest_cbchaos.faults.journal import FaultJournal

    journal = FaultJournal()
    controller = FaultController(journal)
    request.node.stash[FAULT_JOURNAL_KEY] = journal
    yield controller
    try:
        controller.heal_all()
    finally:
        controller.stop_watching()
    journal.close_all()


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
        kit_proxies = set(client.proxies())  # the worker's shared proxies (redis, opencode-*, ...): not the test's
        try:
            yield client
        finally:
            for proxy in list(client.proxies().values()):
                if proxy.name not in kit_proxies:  # only what the test created
                    try:
                        proxy.destroy()
                    except Exception:
                        pass
            APIConsumer.host, APIConsumer.port = saved


ASYNC_PLUGINS_HINT = ("cbchaos: an async test needs an asyncio runner plugin: pytest-asyncio (`pip install "
                      "pytest-asyncio`, mark the test @pytest.mark.asyncio or set asyncio_mode = auto) or anyio's "
                      "plugin (installed with anyio: mark it @pytest.mark.anyio); README, \"Async tests\"")


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """pytest's own "async def functions are not natively supported", plus which plugin to use."""
    try:
        return (yield)
    except pytest.fail.Exception as exc:
        if "not natively supported" in str(exc) and any(n.startswith("cbchaos") for n in pyfuncitem.fixturenames):
            raise pytest.fail.Exception(f"{exc.msg}\n{ASYNC_PLUGINS_HINT}", pytrace=False) from None
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """After a test that used the kit's session servers (its own fixtures torn down): per-test hygiene."""
    result = yield
    names = set(getattr(item, "fixturenames", ()))
    env = item.config.stash.get(ENV_KEY, None)
    if env is None or not names & ENV_FIXTURES:
        return result
    env.reset()
    if names & {"cbchaos_opencode", "cbchaos_opencode_proxy"}:
        from pytest_cbchaos.plugin.fixtures_opencode import check_mock_idle

        check_mock_idle(env.mock_llm())
    return result
