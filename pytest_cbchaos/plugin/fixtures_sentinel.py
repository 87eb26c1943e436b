"""``cbchaos_redis_sentinel``: this worker's Sentinel topology (docs/redis-topologies.md).

The topology is started once per worker and handed out clean: after each test every server a test killed
or paused runs again, every proxy is reset, the sentinels agree on a primary with replication caught up,
and the data set is flushed. Where no redis-server 7.0+ exists the tests that ask for it skip (fail
under CI). ``factories.redis_sentinel(...)`` makes a topology of one's own (other replica count, timings).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from pytest_cbchaos.env import Environment
from pytest_cbchaos.plugin.factories import started_or_skip

SHARED_KEY = "redis-sentinel"


def clean(topology: Any, timeout: float = 15.0) -> None:
    """Per-test hygiene of a topology (see the module doc)."""
    topology.revive()
    for proxy in topology.proxies():
        proxy.reset()
    topology.wait_ready(timeout)
    with topology.primary().admin() as admin:
        admin.flushall()
    topology.wait_ready(timeout)


@pytest.fixture(scope="session")
def _cbchaos_sentinel_topology(cbchaos_env: Environment) -> Any:
    return started_or_skip(lambda: cbchaos_env.shared(SHARED_KEY, lambda env: env.launch_sentinel()))


@pytest.fixture
def cbchaos_redis_sentinel(_cbchaos_sentinel_topology: Any) -> Iterator[Any]:
    """The worker's ``SentinelTopology`` (1 primary, 2 replicas, 3 sentinels), clean for this test."""
    yield _cbchaos_sentinel_topology
    clean(_cbchaos_sentinel_topology)
