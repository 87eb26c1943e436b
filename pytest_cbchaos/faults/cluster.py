"""The Redis Cluster nemesis: a shard's failover, and kill/pause of a node (docs/redis-topologies.md#redis-cluster).

A journaled window of the test's :class:`~.controller.FaultController`; waits are bounded polls of the
nodes' own ``ROLE`` and ``CLUSTER INFO``; a deadline that passes raises ``TopologyNotReady``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from pytest_cbchaos.faults.journal import FaultWindow
from pytest_cbchaos.faults.topology import TopologyNemesis
from pytest_cbchaos.servers.sentinel import TopologyNotReady

if TYPE_CHECKING:  # pragma: no cover
    from pytest_cbchaos.servers.cluster import ClusterNode


class ClusterNemesis(TopologyNemesis):
    """``cbchaos_faults.cluster(topology)``: a shard's failover (``kill``/``pause`` from the base)."""

    def failover(self, key: str) -> FaultWindow:
        """``CLUSTER FAILOVER`` on the replica of the primary serving ``key``; returns once the replica says it
        is master, the old primary says it is a replica and the cluster is ready again."""
        topo = self.topology
        old = topo.owner(key)
        new = topo.replica_of(old)
        window = self._c.journal.begin("failover", old.name, {"key": key, "old_primary": old.name,
                                                              "new_primary": new.name})

        def run() -> None:
            with new.admin() as c:
                c.execute_command("CLUSTER", "FAILOVER")
            self._wait(lambda: new.role_now() == "master" and old.role_now() == "slave",
                       f"{new.name} promoted, {old.name} its replica")
            topo.wait_ready(self.timeout)

        self._c._start(window, run)
        self._c.journal.end(window)
        return window

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() >= deadline:
                raise TopologyNotReady(f"cluster failover: {what} not reached within {self.timeout:.1f} s")
            time.sleep(0.02)

    def primary(self, key: str) -> "ClusterNode":
        return self.topology.owner(key)
