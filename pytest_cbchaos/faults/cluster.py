"""The Redis Cluster nemesis: a shard's failover, a slot's migration, a primary's isolation (split brain),
kill/pause of a node (docs/redis-topologies.md#redis-cluster).

A journaled window of the test's :class:`~.controller.FaultController`; waits are bounded polls of the
nodes' own ``ROLE`` and ``CLUSTER INFO``; a deadline that passes raises ``TopologyNotReady``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import redis

from pytest_cbchaos.faults.controller import FaultParameterError
from pytest_cbchaos.faults.journal import FaultWindow
from pytest_cbchaos.faults.sentinel import HEAL_ORDER
from pytest_cbchaos.faults.topology import TopologyNemesis
from pytest_cbchaos.servers.cluster import SLOTS
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
        old, new, window = self._begin_on_shard("failover", key, "old_primary", "new_primary")

        def run() -> None:
            with new.admin() as c:
                c.execute_command("CLUSTER", "FAILOVER")
            self._wait(lambda: new.role_now() == "master" and old.role_now() == "slave",
                       f"{new.name} promoted, {old.name} its replica")
            topo.wait_ready(self.timeout)

        self._c._start(window, run)
        self._c.journal.end(window)
        return window

    def migrate_slot(self, slot: int, to: Any, *, batch: int = 100,
                     between: Callable[[], None] | None = None) -> FaultWindow:
        """Move ``slot`` to the primary ``to`` (node or name) by the cluster's own protocol, safe under load:
        ``SETSLOT IMPORTING`` on ``to``, ``SETSLOT MIGRATING`` on the owner, ``MIGRATE`` of its keys in batches
        (owner to ``to``'s announced address), then ``SETSLOT NODE`` on ``to``, the owner and the other
        primaries. Meanwhile clients get ``ASK`` for keys already moved, afterwards ``MOVED``. ``between``
        runs once the keys are moved and before the ownership changes (a test's gate: ASK is answered
        then). Returns once every primary names ``to`` as the owner; the window's params name ``from``,
        ``to`` and ``keys_moved``. A migration that fails is rolled back to the owner (``SETSLOT STABLE``)."""
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < SLOTS:
            raise FaultParameterError(f"migrate_slot: slot={slot!r}, expected an int in [0, {SLOTS - 1}]")
        topo = self.topology
        src, dst = topo.slot_owner(slot), self._node(to)
        window = self._c.journal.begin("migrate_slot", src.name, {"slot": slot, "from": src.name, "to": dst.name})

        def run() -> int:
            if dst is src or dst.role_now() != "master":
                raise FaultParameterError(f"migrate_slot: to={dst.name!r} must be a primary other than the "
                                          f"slot's owner {src.name}")
            src_id, dst_id = src.cluster_id(), dst.cluster_id()
            moved = 0
            try:
                with dst.admin() as d, src.admin() as s:
                    d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
                    s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
                    while keys := s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
                        s.execute_command("MIGRATE", dst.peer.listen_host, int(dst.peer.listen_port), "", 0,
                                          int(self.timeout * 1000), "AUTH", topo.password, "KEYS", *keys)
                        moved += len(keys)
                    if between is not None:
                        between()
                    d.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
                    s.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            except BaseException:
                _stable(src, dst, slot)
                raise
            for p in topo.primaries():
                if p is not src and p is not dst:
                    with p.admin() as c:
                        c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            self._wait(lambda: all(topo.slot_owner(slot, via=p) is dst for p in topo.primaries()),
                       f"every primary naming {dst.name} the owner of slot {slot}")
            return moved

        window.params["keys_moved"] = self._c._start(window, run)
        self._c.journal.end(window)
        return window

    def isolate_primary(self, key: str, promote_after_s: float | None = None) -> "Fault":
        """Cut the primary serving ``key`` from the others (its peer and bus proxies down) while clients still
        reach it (client proxy up): its writes from now on reach no replica. Its own links to the others' bus
        proxies stay up, so the cluster does not detect it as failed: :meth:`promote_replica` makes its
        replica take over by a vote of the other primaries (docs/redis-topologies.md#cluster-split-brain).

        Healing reconnects it; if its replica was promoted, the heal waits until it is a replica (its writes
        of the window are then gone) and the cluster is ready; params gain ``new_primary``, ``demoted``.
        With ``promote_after_s``, :meth:`promote_replica` follows that many seconds after the cut (a scenario's
        split brain in one call); a promotion that fails heals the cut and raises."""
        from pytest_cbchaos.faults.controller import Fault

        old, replica, window = self._begin_on_shard("isolate_primary", key, "node", "replica")

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
            self.topology.wait_ready(self.timeout)

        split = self._c._track(Fault(self._c, window, heal, order=HEAL_ORDER))
        if promote_after_s is not None:
            time.sleep(promote_after_s)
            try:
                self.promote_replica(split)
            except BaseException:
                split.heal()
                raise
        return split

    def promote_replica(self, split: "Fault") -> "ClusterNode":
        """``CLUSTER FAILOVER FORCE`` on the isolated primary's replica (the other primaries vote; no handshake
        with the cut primary); returns the replica once it says it is master: a split brain."""
        replica = self._node(split.window.params["replica"])
        with replica.admin() as c:
            c.execute_command("CLUSTER", "FAILOVER", "FORCE")
        self._wait(lambda: replica.role_now() == "master", f"{replica.name} promoted")
        split.window.params["new_primary"] = replica.name
        return replica

    def _begin_on_shard(self, kind: str, key: str, primary_param: str,
                        replica_param: str) -> tuple["ClusterNode", "ClusterNode", FaultWindow]:
        """The primary serving ``key``, its replica, and the fault's journal window naming both."""
        old = self.topology.owner(key)
        replica = self.topology.replica_of(old)
        window = self._c.journal.begin(kind, old.name, {"key": key, primary_param: old.name,
                                                        replica_param: replica.name})
        return old, replica, window

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() >= deadline:
                raise TopologyNotReady(f"cluster: {what} not reached within {self.timeout:.1f} s")
            time.sleep(0.02)

    def primary(self, key: str) -> "ClusterNode":
        return self.topology.owner(key)


def _stable(src: "ClusterNode", dst: "ClusterNode", slot: int) -> None:
    """Clear the migration state on both nodes (best effort: the slot stays with its owner)."""
    for n in (dst, src):
        try:
            with n.admin() as c:
                c.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        except redis.RedisError:
            pass
