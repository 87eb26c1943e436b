"""Foundation fixtures: thin adapters over the worker's :class:`~pytest_cbchaos.env.Environment`.

Scopes: processes are session scoped (once per xdist worker); clients and the fault controller are
function scoped. After every test that used the kit's servers, the environment's per-test hygiene runs
(toxics removed, proxies re-enabled, a killed Redis brought back, FLUSHALL, opencode left clean).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from pytest_cbchaos.env import Environment
from pytest_cbchaos.faults.controller import FaultController
from pytest_cbchaos.faults.journal import FaultJournal
from pytest_cbchaos.plugin import factories
from pytest_cbchaos.plugin.session import worker_id
from pytest_cbchaos.servers.redis import RedisServer
from pytest_cbchaos.settings import Settings, get_settings

ENV_KEY = pytest.StashKey[Environment]()
FAULT_JOURNAL_KEY = pytest.StashKey[FaultJournal]()
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
    """Fault controller; every fault is journaled and healed at teardown."""
    journal = FaultJournal()
    controller = FaultController(journal)
    request.node.stash[FAULT_JOURNAL_KEY] = journal
    yield controller
    controller.heal_all()
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


@pytest.fixture(autouse=True)
def _cbchaos_per_test_reset(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the kit's session servers: the environment's per-test hygiene."""
    yield
    names = set(request.fixturenames)
    env = request.config.stash.get(ENV_KEY, None)
    if env is None or not names & ENV_FIXTURES:
        return
    env.reset()
    if names & {"cbchaos_opencode", "cbchaos_opencode_proxy"}:
        from pytest_cbchaos.plugin.fixtures_opencode import check_mock_idle

        check_mock_idle(env.mock_llm())
