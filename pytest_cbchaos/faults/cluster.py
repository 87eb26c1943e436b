"""The Redis Cluster nemesis: a shard's failover, a primary's isolation (split brain), kill/pause of a node
(docs/redis-topologies.md#redis-cluster).

A journaled window of the test's :class:`~.controller.FaultController`; waits are bounded polls of the
nodes' own ``ROLE`` and ``CLUSTER INFO``; a deadline that passes raises ``TopologyNotReady``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from pytest_cbchaos.faults.journal import FaultWindow
from pytest_cbchaos.faults.sentinel import HEAL_ORDER
from pytest_cbchaos.faults.topology import TopologyNemesis
from pytest_cbchaos.servers.sentinel import TopologyNotReady

if TYPE_CHECKING:  # pragma: no cover
    from pytest_cbchaos.faults.controller import Fault
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

    def isolate_primary(self, key: str) -> "Fault":
        """Cut the primary serving ``key`` from the others (its peer and bus proxies down) while clients still
        reach it (client proxy up): its writes from now on reach no replica. Its own links to the others' bus
        proxies stay up, so the cluster does not detect it as failed: :meth:`promote_replica` makes its
        replica take over by a vote of the other primaries (docs/redis-topologies.md#cluster-split-brain).

        Healing reconnects it; if its replica was promoted, the heal waits until it is a replica (its writes
        of the window are then gone) and the cluster is ready; params gain ``new_primary``, ``demoted``."""
        from pytest_cbchaos.faults.controller import Fault

        topo = self.topology
        old = topo.owner(key)
        replica = topo.replica_of(old)
        window = self._c.journal.begin("isolate_primary", old.name, {"key": key, "node": old.name,
                                                                     "replica": replica.name})

        def cut() -> None:
            old.peer.disable()
            old.bus.disable()

        self._c._start(window, cut)

        def heal() -> None:
            old.peer.enable()
            old.bus.enable()
            if replica.role_now() == "master":
                window.params["new_primary"] = replica.name
                self._wait(lambda: old.role_now() == "slave", f"{old.name} demoted to a replica of {replica.name}")
                window.params["demoted"] = True
            topo.wait_ready(self.timeout)

        return self._c._track(Fault(self._c, window, heal, order=HEAL_ORDER))

    def promote_replica(self, split: "Fault") -> "ClusterNode":
        """``CLUSTER FAILOVER FORCE`` on the isolated primary's replica (the other primaries vote; no handshake
        with the cut primary); returns the replica once it says it is master: a split brain."""
        replica = self._node(split.window.params["replica"])
        with replica.admin() as c:
            c.execute_command("CLUSTER", "FAILOVER", "FORCE")
        self._wait(lambda: replica.role_now() == "master", f"{replica.name} promoted")
        split.window.params["new_primary"] = replica.name
        return replica

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() >= deadline:
                raise TopologyNotReady(f"cluster failover: {what} not reached within {self.timeout:.1f} s")
            time.sleep(0.02)

    def primary(self, key: str) -> "ClusterNode":
        return self.topology.owner(key)
