"""A Redis Cluster: ``shards`` primaries with one replica each (docs/redis-topologies.md#redis-cluster).

Every node is a real ``redis-server`` in cluster mode on 127.0.0.1 with one password (``requirepass``,
``masterauth``), a private directory and the kit's orphan protection, like the Sentinel topology. Each node
has three fault proxies: ``peer`` (its announced data address, ``cluster-announce-port``: replication and
the addresses clients learn from ``CLUSTER SLOTS`` and redirections), ``bus`` (its announced cluster-bus
address, ``cluster-announce-bus-port``: gossip and failover votes) and ``client`` (what the kit's clients
use). :meth:`ClusterTopology.cluster_client` is a redis-py ``RedisCluster`` whose ``address_remap`` maps
every announced address to the node's client proxy.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import redis
import redis.cluster

from pytest_cbchaos.servers.ports import DEFAULT_RANGE, PortLease, allocate_port
from pytest_cbchaos.servers.redis import _start_binary
from pytest_cbchaos.servers.sentinel import Node, TopologyNotReady, _s, topology_binary
from pytest_cbchaos.servers.topology import ServerGroup, check_int_params

SLOTS = 16384


@dataclass
class ClusterNode(Node):
    """A cluster node: a :class:`Node` plus the proxy of its cluster bus."""

    bus: Any = None

    def proxies(self) -> tuple[Any, ...]:
        return (self.peer, self.bus, self.client)

    def cluster_id(self) -> str:
        with self.admin(socket_timeout=1.0) as c:
            return _s(c.execute_command("CLUSTER", "MYID"))

    def cluster_info(self) -> dict[str, str]:
        with self.admin(socket_timeout=1.0) as c:
            raw = _s(c.execute_command("CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)


class ClusterTopology(ServerGroup):
    """A running cluster; :meth:`stop` tears everything down."""

    def __init__(self, password: str, nodes: list[ClusterNode], shards: int, version: str) -> None:
        self.password, self.nodes, self.shards, self.version = password, nodes, shards, version
        self.backend = "binary"
        self._leases: list[PortLease] = []
        self._clients: list[Any] = []

    def node_at(self, addr: tuple[str, Any]) -> ClusterNode:
        """The node whose peer proxy (announced address) or client proxy is ``addr``."""
        for n in self.nodes:
            if int(addr[1]) in (int(n.peer.listen_port), int(n.client.listen_port)):
                return n
        raise KeyError(f"no node of the cluster announces {addr[0]}:{addr[1]}")

    def client_address(self, addr: tuple[str, Any]) -> tuple[str, int]:
        n = self.node_at(addr)
        return (n.client.listen_host, int(n.client.listen_port))

    def cluster_client(self, *, socket_timeout: float = 2.0, **kwargs: Any) -> redis.cluster.RedisCluster:
        """``RedisCluster`` through the client proxies (announced addresses remapped), authenticated."""
        first = self.nodes[0].client
        kwargs.setdefault("socket_connect_timeout", socket_timeout)
        client = redis.cluster.RedisCluster(host=first.listen_host, port=int(first.listen_port),
                                            password=self.password, socket_timeout=socket_timeout,
                                            address_remap=self.client_address, **kwargs)
        self._clients.append(client)
        return client

    def async_cluster_client(self, *, socket_timeout: float = 2.0, **kwargs: Any) -> Any:
        """The ``redis.asyncio`` twin of :meth:`cluster_client` (the caller closes it: ``await c.aclose()``)."""
        from redis.asyncio.cluster import RedisCluster

        first = self.nodes[0].client
        kwargs.setdefault("socket_connect_timeout", socket_timeout)
        return RedisCluster(host=first.listen_host, port=int(first.listen_port), password=self.password,
                            socket_timeout=socket_timeout, address_remap=self.client_address, **kwargs)

    def primaries(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.role_now() == "master"]

    def view(self, via: ClusterNode | None = None) -> list[dict[str, Any]]:
        """``CLUSTER NODES`` as ``via`` (default: the first node that answers) sees it: per node its ``node``,
        ``id``, ``flags``, ``primary_id`` and ``slots`` (a list of (start, end))."""
        last: Exception | None = None
        for n in [via] if via is not None else self.nodes:
            try:
                with n.admin(socket_timeout=1.0) as c:
                    raw = _s(c.execute_command("CLUSTER", "NODES"))
                return [_entry(self, line.split()) for line in raw.splitlines() if line.strip()]
            except redis.RedisError as exc:
                last = exc
        raise TopologyNotReady(f"no cluster node answers CLUSTER NODES ({last})")

    def owner(self, key: str) -> ClusterNode:
        """The primary serving ``key``'s slot (as the cluster's view says)."""
        return self.slot_owner(redis.cluster.key_slot(key.encode()), f" of {key!r}")

    def slot_owner(self, slot: int, what: str = "", via: ClusterNode | None = None) -> ClusterNode:
        """The primary serving ``slot`` as ``via`` (default: the first node that answers) sees it."""
        for e in self.view(via):
            if "master" in e["flags"] and any(a <= slot <= b for a, b in e["slots"]):
                return e["node"]
        raise TopologyNotReady(f"no primary serves slot {slot}{what}")

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        """The node replicating ``primary``, as the replicas themselves say (``INFO replication``): the
        gossiped view of another node can still show the roles from before a failover."""
        ports = {int(primary.peer.listen_port), int(primary.port)}
        for n in self.nodes:
            if n is primary:
                continue
            try:
                with n.admin(socket_timeout=1.0) as c:
                    rep = c.info("replication")
            except redis.RedisError:
                continue
            if rep.get("role") == "slave" and int(rep.get("master_port", -1)) in ports:
                return n
        raise TopologyNotReady(f"{primary.name} has no replica")

    def wait_ready(self, timeout: float) -> float:
        """Until every node says ``cluster_state:ok`` and knows every other node, every replica's link is up
        and every primary's replica acknowledged its current offset. Returns the seconds waited."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            why = self._not_ready()
            if why is None:
                return time.monotonic() - t0
            if time.monotonic() >= deadline:
                raise TopologyNotReady(f"cluster not ready after {timeout:.1f} s: {why}")
            time.sleep(0.05)

    def _not_ready(self) -> str | None:
        try:
            masters: set[str] = set()
            for n in self.nodes:
                info = n.cluster_info()
                if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != len(self.nodes):
                    return f"{n.name}: {info.get('cluster_state')}, knows {info.get('cluster_known_nodes')} nodes"
                with n.admin(socket_timeout=1.0) as c:
                    rep = c.info("replication")
                if rep["role"] == "master":
                    masters.add(n.name)
                if rep["role"] == "slave":
                    if rep.get("master_link_status") != "up":
                        return f"{n.name}: link to its primary {rep.get('master_link_status')}"
                elif rep.get("connected_slaves", 0) < 1:
                    return f"{n.name}: no replica connected"
                else:
                    with n.admin(socket_timeout=1.0) as c:  # WAIT asks the replica for its offset (GETACK)
                        if int(c.execute_command("WAIT", 1, 200)) < 1:
                            return f"{n.name}: its replica has not acknowledged the current offset"
            return self._views_disagree(masters)
        except (redis.RedisError, TopologyNotReady, KeyError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def _views_disagree(self, masters: set[str]) -> str | None:
        """Why the nodes' gossiped views do not yet agree on which nodes serve slots, all of them nodes that say
        they are master (a failover's new epoch reaches the other nodes a little after the promoted replica
        says master)."""
        seen: dict[str, set[str]] = {}
        for n in self.nodes:
            owners = {e["node"].name for e in self.view(n) if "master" in e["flags"] and e["slots"]}
            seen[n.name] = owners
            if not owners <= masters or owners != next(iter(seen.values())):
                return f"slot owners as each node sees them: {seen}; the nodes saying master: {sorted(masters)}"
        return None

    def primaries_now(self) -> list[ClusterNode]:
        return self.primaries()


def _entry(topo: ClusterTopology, f: list[str]) -> dict[str, Any]:
    """One ``CLUSTER NODES`` line: ``<id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch> <link> <slot>...``."""
    port = f[1].split("@", 1)[0].rsplit(":", 1)[1]
    slots = []
    for r in f[8:]:
        if not r.startswith("["):
            a, _, b = r.partition("-")
            slots.append((int(a), int(b or a)))
    return {"node": topo.node_at(("", port)), "id": f[0], "flags": set(f[2].split(",")),
            "primary_id": None if f[3] == "-" else f[3], "slots": slots}


def check_cluster_params(shards: Any, node_timeout_ms: Any) -> None:
    check_int_params("cluster", {"shards": (shards, 1), "node_timeout_ms": (node_timeout_ms, 100)})


def start_cluster_topology(
    *,
    workdir: Path,
    create_proxy: Callable[[str, str], Any],
    executable: str | None = None,
    shards: int = 3,
    port_range: tuple[int, int] = DEFAULT_RANGE,
    startup_timeout: float = 10.0,
    node_timeout_ms: int = 1000,
) -> ClusterTopology:
    """Start ``shards`` primaries + one replica each, slots split evenly, and wait until ready.

    Raises :class:`~pytest_cbchaos.servers.redis.BackendUnavailable` where no redis-server 7.0+ exists."""
    check_cluster_params(shards, node_timeout_ms)
    executable, version = topology_binary(executable, "cluster")
    password = secrets.token_hex(16)
    tag = secrets.token_hex(3)
    topo = ClusterTopology(password, [], shards, version)
    try:
        for i in range(2 * shards):
            data, bus = allocate_port(port_range), allocate_port(port_range)
            topo._leases += [data, bus]
            name = f"cluster-{i}"
            topo.nodes.append(ClusterNode(name, "redis", data.port, password,
                                          create_proxy(f"clu-{tag}-{name}-peer", f"127.0.0.1:{data.port}"),
                                          create_proxy(f"clu-{tag}-{name}-client", f"127.0.0.1:{data.port}"),
                                          bus=create_proxy(f"clu-{tag}-{name}-bus", f"127.0.0.1:{bus.port}")))

        def start(node: ClusterNode, data: PortLease, bus: PortLease) -> None:
            args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(node_timeout_ms), "--cluster-port", str(bus.port),
                    "--cluster-announce-ip", node.peer.listen_host,
                    "--cluster-announce-port", str(node.peer.listen_port),
                    "--cluster-announce-bus-port", str(node.bus.listen_port),
                    "--cluster-replica-validity-factor", "0", "--masterauth", password,
                    "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"]
            node.server = _start_binary(executable, Path(workdir) / node.name, port_range, startup_timeout,
                                        extra_args=args, lease=data, password=password)
            node.process, node.dir = node.server.process, node.server.dir
            node.server.lease = None  # the topology holds the lease

        for i, n in enumerate(topo.nodes):
            start(n, topo._leases[2 * i], topo._leases[2 * i + 1])
        _form(topo, startup_timeout)
        topo.wait_ready(startup_timeout)
    except BaseException:
        topo.stop()
        raise
    return topo


def _form(topo: ClusterTopology, timeout: float) -> None:
    """Slots split over the first ``shards`` nodes, every node met through its announced addresses, then
    each other node replicates one primary."""
    primaries, replicas = topo.nodes[:topo.shards], topo.nodes[topo.shards:]
    per = SLOTS // topo.shards
    for k, p in enumerate(primaries):
        end = SLOTS - 1 if k == topo.shards - 1 else (k + 1) * per - 1
        with p.admin() as c:
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", k * per, end)
    with topo.nodes[0].admin() as c:
        for n in topo.nodes[1:]:
            c.execute_command("CLUSTER", "MEET", n.peer.listen_host, int(n.peer.listen_port), int(n.bus.listen_port))
    ids = {p.name: p.cluster_id() for p in primaries}
    deadline = time.monotonic() + timeout
    for p, r in zip(primaries, replicas):
        while True:  # the replica must know its primary (gossip) before CLUSTER REPLICATE
            try:
                with r.admin() as c:
                    c.execute_command("CLUSTER", "REPLICATE", ids[p.name])
                break
            except redis.ResponseError as exc:
                if time.monotonic() >= deadline:
                    raise TopologyNotReady(f"{r.name} cannot replicate {p.name}: {exc}") from None
                time.sleep(0.05)
