"""``cbchaos_redis_sentinel`` and ``cbchaos_redis_cluster``: this worker's Sentinel topology and Redis Cluster
(docs/redis-topologies.md).

The topology is started once per worker and handed out clean: after each test every server a test killed
or paused runs again, every proxy is reset, the sentinels agree on a primary with replication caught up,
and the data set is flushed. Where no redis-server 7.0+ exists the tests that ask for it skip (fail
under CI); the cluster is the same. ``factories.redis_sentinel(...)`` makes a topology of one's own (other replica count, timings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import pytest

from pytest_cbchaos.plugin.factories import started_or_skip

if TYPE_CHECKING:
    from pytest_cbchaos.env import Environment


@pytest.fixture(scope="session")
def _cbchaos_sentinel_topology(cbchaos_env: Environment) -> Any:
    """The worker's shared topology, started on first use (``Environment.sentinel``)."""
    return started_or_skip(cbchaos_env.sentinel)


@pytest.fixture
def cbchaos_redis_sentinel(_cbchaos_sentinel_topology: Any) -> Iterator[Any]:
    """The worker's ``SentinelTopology`` (1 primary, 2 replicas, 3 sentinels), clean for this test."""
    yield _cbchaos_sentinel_topology
    _cbchaos_sentinel_topology.clean()


@pytest.fixture(scope="session")
def _cbchaos_cluster_topology(cbchaos_env: Environment) -> Any:
    """The worker's shared cluster, started on first use (``Environment.cluster``)."""
    return started_or_skip(cbchaos_env.cluster)


@pytest.fixture
def cbchaos_redis_cluster(_cbchaos_cluster_topology: Any) -> Iterator[Any]:
    """The worker's ``ClusterTopology`` (3 primaries with a replica each), clean for this test."""
    yield _cbchaos_cluster_topology
    _cbchaos_cluster_topology.clean()
