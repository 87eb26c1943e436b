"""The Sentinel nemesis: failover, split brain, kill and pause on a :class:`SentinelTopology`
(docs/redis-topologies.md#the-nemesis).

Each action is a journaled window of the test's :class:`~.controller.FaultController` and is healed at
teardown. Waits are bounded polls of the sentinels' answer (``SENTINEL GET-MASTER-ADDR-BY-NAME``) and of the
nodes' own ``ROLE``; a deadline that passes raises ``TopologyNotReady`` naming what was awaited.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import redis

from pytest_cbchaos.faults.journal import FaultWindow
from pytest_cbchaos.faults.topology import TopologyNemesis
from pytest_cbchaos.servers.sentinel import TopologyNotReady

if TYPE_CHECKING:  # pragma: no cover
    from pytest_cbchaos.faults.controller import Fault
    from pytest_cbchaos.servers.sentinel import Node

# split-brain heal: the old primary is demoted by the sentinels within one INFO period once reachable
HEAL_ORDER = 2  # after process faults (0) and proxy faults (1): the sentinels must be running


class SentinelNemesis(TopologyNemesis):
    """``cbchaos_faults.sentinel(topology)``: the topology-level faults (``kill``/``pause`` from the base)."""

    def wait_new_primary(self, old: "Node", timeout: float | None = None) -> "Node":
        """The node the sentinels promoted instead of ``old`` (bounded wait)."""
        return self.topology.wait_primary(lambda n: n is not old, timeout or self.timeout,
                                          f"a primary other than {old.name}")

    def wait_demoted(self, old: "Node", new: "Node", timeout: float | None = None) -> None:
        """Until ``old`` (if it runs and the sentinels reach it) says it is a replica of ``new``."""
        if old.process is None or not old.process.alive or old.process.paused or not old.peer.enabled:
            return
        self.topology.wait_primary(lambda n: n is new and old.role_now() == "slave", timeout or self.timeout,
                                   f"{old.name} demoted to a replica of {new.name}")

    def failover(self) -> FaultWindow:
        """``SENTINEL FAILOVER``; returns once every reachable sentinel names the new primary (``+switch-master``),
        it says it is master and the old primary says it is a replica."""
        topo = self.topology
        old = topo.primary()
        window = self._c.journal.begin("failover", topo.master_name, {"old_primary": old.name})

        def run() -> "Node":
            # a failover the sentinel aborts (e.g. no replica with fresh INFO) is started again, within the timeout
            attempt_s = 2 * topo.failover_timeout_ms / 1000 + 1.0
            deadline = time.monotonic() + self.timeout
            leader = self._start_failover()
            while True:
                try:
                    new = self.wait_new_primary(old, min(attempt_s, max(0.1, deadline - time.monotonic())))
                    break
                except TopologyNotReady:
                    if time.monotonic() + 0.1 >= deadline:
                        raise
                    if not self._failover_under_way(old, leader):
                        leader = self._start_failover()
            self.wait_demoted(old, new)
            return new

        new = self._c._start(window, run)
        window.params["new_primary"] = new.name
        self._c.journal.end(window)
        return window

    def _start_failover(self) -> "Node":
        """The sentinel now running the failover: the first that accepts it, or one already running one."""
        topo = self.topology
        last: Exception | None = None
        for s in topo.sentinels:
            try:
                with s.admin() as c:
                    c.execute_command("SENTINEL", "FAILOVER", topo.master_name)
                return s
            except redis.ResponseError as exc:
                if str(exc).startswith("INPROG"):  # asking another sentinel would start a second failover
                    return s
                last = exc  # e.g. NOGOODSLAVE: another sentinel's view of the replicas may be fresher
            except redis.RedisError as exc:  # a killed or paused sentinel: the next one
                last = exc
        raise RuntimeError(f"failover: no sentinel accepted SENTINEL FAILOVER ({last})")

    def _failover_under_way(self, old: "Node", leader: "Node") -> bool:
        """The attempt is not aborted: some sentinel already names a primary other than ``old``, or ``leader``
        is still failing over. Starting again then would fail over the promoted replica as well."""
        port = int(old.peer.listen_port)
        moved = any(v is not None and int(v[1]) != port for v in self.topology.sentinel_views())
        return moved or self.topology.failover_in_progress(leader)

    def isolate_primary(self) -> "Fault":
        """Cut the primary from its replicas and the sentinels (its peer proxy down) while clients still reach
        it (client proxy up): split brain once the sentinels promote a replica.

        Healing reconnects it; if a replica was promoted meanwhile, the heal waits until the sentinels have
        demoted the old primary (its writes of the window are then gone) and replication has caught up."""
        from pytest_cbchaos.faults.controller import Fault

        topo = self.topology
        old = topo.primary()
        window = self._c.journal.begin("isolate_primary", old.name, {"node": old.name})
        self._c._start(window, old.peer.disable)

        def heal() -> None:
            old.peer.enable()
            new = topo.primary()
            window.params["new_primary"] = new.name
            if new is not old:
                self.wait_demoted(old, new)
                window.params["demoted"] = True
            topo.wait_ready(self.timeout)

        return self._c._track(Fault(self._c, window, heal, order=HEAL_ORDER))

    def primary(self) -> Any:
        return self.topology.primary()
