"""``cbchaos_redis_sentinel`` and ``cbchaos_redis_cluster``: this worker's Sentinel topology and Redis Cluster
(docs/redis-topologies.md).

The topology is started once per worker and handed out clean: after each test every server a test killed
or paused runs again, every proxy is reset, the sentinels agree on a primary with replication caught up,
and the data set is flushed. Where no redis-server 7.0+ exists the tests that ask for it skip (fail
under CI); the cluster is the same. ``factories.redis_sentinel(...)`` makes a topology of one's own (other replica count, timings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

from pytest_cbchaos.plugin.factories import started_or_skip

if TYPE_CHECKING:
    from pytest_cbchaos.env import Environment


def _handed_out_clean(make: Callable[[], Any]) -> Iterator[Any]:
    """The worker's shared topology (``make`` starts it on first use, skips where it cannot run), cleaned after."""
    topology = started_or_skip(make)
    yield topology
    topology.clean()


@pytest.fixture
def cbchaos_redis_sentinel(cbchaos_env: Environment) -> Iterator[Any]:
    """The worker's ``SentinelTopology`` (1 primary, 2 replicas, 3 sentinels), clean for this test."""
    yield from _handed_out_clean(cbchaos_env.sentinel)


@pytest.fixture
def cbchaos_redis_cluster(cbchaos_env: Environment) -> Iterator[Any]:
    """The worker's ``ClusterTopology`` (3 primaries with a replica each), clean for this test."""
    yield from _handed_out_clean(cbchaos_env.cluster)
