"""Observers of who is primary, feeding the report's topology lane (docs/report-schema.md#topology-lane).

* Sentinel: the initial primary as a sentinel majority names it, then every ``+switch-master`` the sentinels
  publish (a subscription on each sentinel's direct link, so cutting the proxies does not blind it).
* Cluster: each node's own ``ROLE``, polled; a node seen turning master is a new primary of its shard.

Started when a test first asks for a topology's nemesis; stopped (after reading what is still buffered) at
the fault controller's teardown, before the report record is built.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

from pytest_cbchaos.report.topology import TopologyLane
from pytest_cbchaos.servers.sentinel import _s

SWITCH = "+switch-master"
POLL_S = 0.1  # cluster ROLE poll period: a failover takes far longer (node timeout 1 s)


class _Watcher:
    """One daemon thread calling :meth:`_step` until stopped; :meth:`stop` runs a last step first."""

    def __init__(self, lane: TopologyLane, topology: Any) -> None:
        self.lane, self.topology = lane, topology
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cbchaos-{lane.kind}-watch", daemon=True)

    def start(self) -> "_Watcher":
        try:
            self._begin()
        except Exception as exc:  # the nemesis works without its observer; the lane says what is missing
            self.lane.errors.append(f"observer not started: {type(exc).__name__}: {exc}")
            self._close()
            return self
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step(POLL_S)
            except Exception as exc:  # an observer that fails says so in the lane, never in the test
                self.lane.errors.append(f"{type(exc).__name__}: {exc}")
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is None:
            return  # never started
        self._thread.join(timeout=5.0)
        try:
            self._step(0.0)  # whatever arrived before the stop
        except Exception as exc:
            self.lane.errors.append(f"{type(exc).__name__}: {exc}")
        self._close()

    def _begin(self) -> None:
        raise NotImplementedError

    def _step(self, wait_s: float) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Release connections (none by default)."""


class SentinelWatcher(_Watcher):
    def _begin(self) -> None:
        self._subs: list[Any] = []
        self.lane.observe(self.topology.primary().name, "sentinel majority (SENTINEL GET-MASTER-ADDR-BY-NAME)")
        for s in self.topology.sentinels:
            try:
                ps = s.admin(socket_timeout=None).pubsub()
                ps.subscribe(SWITCH)
                ps.get_message(timeout=2.0)  # the subscription's confirmation: from here on nothing is missed
                self._subs.append(ps)
            except redis.RedisError:  # a sentinel the test killed or paused earlier: the others report
                continue

    def _step(self, wait_s: float) -> None:
        for ps in list(self._subs):
            while True:
                try:
                    msg = ps.get_message(ignore_subscribe_messages=True, timeout=wait_s / max(1, len(self._subs)))
                except (redis.ConnectionError, redis.TimeoutError):  # that sentinel was killed: the others report
                    self._subs.remove(ps)
                    break
                if msg is None:
                    break
                self._switch(_s(msg["data"]))

    def _switch(self, data: str) -> None:
        """``<master name> <old ip> <old port> <new ip> <new port>`` (announced addresses: peer proxies)."""
        f = data.split()
        if len(f) != 5 or f[0] != self.topology.master_name:
            return
        old, new = self.topology.node_at((f[1], f[2])), self.topology.node_at((f[3], f[4]))
        self.lane.observe(new.name, SWITCH, previous=old.name)

    def _close(self) -> None:
        for ps in getattr(self, "_subs", ()):
            try:
                ps.close()
            except Exception:
                pass


class ClusterWatcher(_Watcher):
    def _begin(self) -> None:
        self._clients: dict[str, Any] = {n.name: n.admin(socket_timeout=0.5, socket_connect_timeout=0.5)
                                         for n in self.topology.nodes}
        self._shard: dict[str, str] = {}  # node -> shard, named after the shard's first primary
        self._master: dict[str, bool] = {}
        roles = {n.name: self._role(n) for n in self.topology.nodes}
        for name, role in roles.items():
            if role and role[0] == "master":
                self._shard[name] = name
        for name, role in roles.items():
            if role and role[0] == "slave":
                self._shard[name] = self._shard.get(role[1] or "", role[1] or name)
        for name, role in roles.items():
            self._master[name] = bool(role) and role[0] == "master"
            if self._master[name]:
                self.lane.observe(name, "ROLE", shard=self._shard[name])

    def _role(self, node: Any) -> tuple[str, str | None] | None:
        """(role, the primary it replicates) or None when the node does not answer."""
        try:
            r = self._clients[node.name].execute_command("ROLE")
        except redis.RedisError:
            return None
        role = _s(r[0])
        if role == "slave":
            try:
                return role, self.topology.node_at((_s(r[1]), r[2])).name
            except KeyError:
                return role, None
        return role, None

    def _step(self, wait_s: float) -> None:
        for n in self.topology.nodes:
            role = self._role(n)
            if role is None:
                continue
            was, now = self._master.get(n.name, False), role[0] == "master"
            self._master[n.name] = now
            if now and not was:
                self.lane.observe(n.name, "ROLE", shard=self._shard.get(n.name, n.name))
        if wait_s:
            self._stop.wait(wait_s)

    def _close(self) -> None:
        for c in getattr(self, "_clients", {}).values():
            c.close()


def watch(kind: str, topology: Any) -> _Watcher:
    """A started watcher of ``topology`` (``kind``: ``sentinel`` or ``cluster``) with a fresh lane."""
    cls = SentinelWatcher if kind == "sentinel" else ClusterWatcher
    return cls(TopologyLane(kind), topology).start()

