"""A replicated Redis under Sentinel: 1 primary, ``replicas`` replicas, 3 sentinels (docs/redis-topologies.md).

Every node and sentinel is a real ``redis-server`` (``--sentinel`` for the sentinels) on 127.0.0.1, with one
password for all (``requirepass``, ``masterauth``, ``sentinel auth-pass``), a private directory and the kit's
orphan protection (:class:`~pytest_cbchaos.servers.process.ManagedProcess`). Each server has two fault proxies:

* ``peer``: what the others use. Its address is the server's announced one (``replica-announce-ip/port``,
  ``sentinel announce-ip/port``), so replication links, sentinel monitoring and sentinel gossip all go
  through it: disabling a node's peer proxy cuts it from its replicas and the sentinels.
* ``client``: what the kit's clients use. :meth:`SentinelTopology.sentinel` returns a redis-py ``Sentinel``
  that talks to the sentinels' client proxies and maps every address the sentinels announce (a peer proxy)
  to the matching client proxy.

Sentinel timers are shortened with ``SENTINEL DEBUG`` (Redis 7.0+) so that discovery, failover and the
demotion of a returning old primary take a fraction of a second instead of 10 s periods; TILT mode (a
sentinel stops acting after its timer stalled) triggers only after a 30 s stall, so a busy host or a
paused sentinel does not freeze the topology for 30 s.
"""

from __future__ import annotations

import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import redis
import redis.sentinel

from pytest_cbchaos.servers.ports import DEFAULT_RANGE, PortLease, allocate_port
from pytest_cbchaos.servers.process import ManagedProcess, ServerStartError
from pytest_cbchaos.servers.redis import (INSTALL_HINT, BackendUnavailable, RedisServer, _start_binary, no_retry,
                                          redis_binary_version)
from pytest_cbchaos.servers.topology import ServerGroup, check_int_params

MASTER_NAME = "cbchaos"
QUORUM = 2
SENTINELS = 3
# SENTINEL DEBUG periods (ms): fast discovery and reaction; no TILT unless the timer stalls for 30 s. While the
# primary is down or failing over a sentinel refreshes INFO from replicas every 1000 ms (fixed,
# FAILOVER_INFO_PERIOD_MS) and takes a replica for promotion only if its INFO is younger than 5 x ping-period:
# ping-period 300 keeps that above 1000 ms (no aborted failover). The leader so sees its promoted replica answer
# "master" up to 1000 ms late (0.8-0.9 s measured idle), and only then tells the other sentinels; they turn a
# replica that claims master back into a replica after 4 x publish-period. publish-period 500 gives them 2000 ms,
# 1 s more than the leader can need; at 200 (800 ms) a forced failover was undone about 1 time in 15 and the
# sentinels then failed over a second time on their own.
FAILOVER_INFO_PERIOD_MS = 1000
SENTINEL_DEBUG = {"info-period": 200, "ping-period": 300, "ask-period": 200, "publish-period": 500,
                  "tilt-trigger": 30000, "tilt-period": 1000, "min-link-reconnect-period": 200,
                  "slave-reconf-timeout": 2000, "election-timeout": 1000}


class TopologyNotReady(ServerStartError):
    """The topology did not converge (replication caught up, sentinels agreeing) before the deadline."""


@dataclass
class Node:
    """One server of the topology: a Redis node or a sentinel, its two proxies and its process."""

    name: str
    role: str  # "redis" | "sentinel"
    port: int
    password: str
    peer: Any  # fault proxy the other servers use (the announced address)
    client: Any  # fault proxy the kit's clients use
    process: ManagedProcess | None = None
    dir: Path | None = None
    server: RedisServer | None = field(default=None, repr=False)
    myid: str = ""

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def peer_addr(self) -> tuple[str, int]:
        return (self.peer.listen_host, int(self.peer.listen_port))

    def admin(self, **kwargs: Any) -> redis.Redis:
        """A direct client (bypasses both proxies): setup and verification only."""
        kwargs.setdefault("socket_timeout", 2.0)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        return redis.Redis(host=self.host, port=self.port, password=self.password, retry=no_retry(), **kwargs)

    def via_client_proxy(self, **kwargs: Any) -> redis.Redis:
        """A client pinned to this node through its client proxy (a client that does not ask the sentinels)."""
        kwargs.setdefault("socket_timeout", 2.0)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        return redis.Redis(host=self.client.listen_host, port=int(self.client.listen_port), password=self.password,
                           retry=no_retry(), **kwargs)

    def proxies(self) -> tuple[Any, ...]:
        return (self.peer, self.client)

    def role_now(self) -> str:
        """``master`` / ``slave`` as the node itself says (direct link)."""
        with self.admin(socket_timeout=1.0) as c:
            return str(c.info("replication")["role"])


class MappedSentinel(redis.sentinel.Sentinel):
    """redis-py ``Sentinel`` whose discovered addresses (peer proxies) are mapped to client proxies."""

    def __init__(self, sentinels: list[tuple[str, int]], mapping: Callable[[tuple[str, int]], tuple[str, int]],
                 **kwargs: Any) -> None:
        super().__init__(sentinels, **kwargs)
        self._map = mapping

    def discover_master(self, service_name: str) -> tuple[str, int]:
        return self._map(tuple(super().discover_master(service_name)))  # type: ignore[arg-type]

    def discover_slaves(self, service_name: str) -> list[tuple[str, int]]:
        return [self._map(tuple(a)) for a in super().discover_slaves(service_name)]  # type: ignore[arg-type]


def mapped_async_sentinel_class() -> type:
    """``redis.asyncio`` twin of :class:`MappedSentinel` (built on first use: the asyncio client is optional)."""
    import redis.asyncio as aioredis
    import redis.asyncio.sentinel as asentinel

    class SentinelMasterClient(aioredis.Redis):
        """A primary's client whose ``aclose`` also closes the links to the sentinels it asked. redis-py
        closes only the primary's pool: the sentinels' connections, made in the caller's loop, stayed open,
        and each one dropped later was an "unclosed Connection" ("loop is closed" once that loop had ended)."""

        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            try:
                await super().aclose(close_connection_pool)
            finally:
                for sentinel in self.connection_pool.sentinel_manager.sentinels:
                    await sentinel.aclose()

    class MappedAsyncSentinel(asentinel.Sentinel):
        def __init__(self, sentinels: list[tuple[str, int]], mapping: Callable[[tuple[str, int]], tuple[str, int]],
                     **kwargs: Any) -> None:
            super().__init__(sentinels, **kwargs)
            self._map = mapping

        def master_for(self, service_name: str, redis_class: type = SentinelMasterClient,  # type: ignore[override]
                       **kwargs: Any) -> Any:
            return super().master_for(service_name, redis_class=redis_class, **kwargs)

        async def discover_master(self, service_name: str) -> tuple[str, int]:
            return self._map(tuple(await super().discover_master(service_name)))  # type: ignore[arg-type]

        async def discover_slaves(self, service_name: str) -> list[tuple[str, int]]:
            return [self._map(tuple(a)) for a in await super().discover_slaves(service_name)]  # type: ignore[arg-type]

    return MappedAsyncSentinel


class SentinelTopology(ServerGroup):
    """A running primary + replicas + 3 sentinels; :meth:`stop` tears everything down."""

    def __init__(self, password: str, nodes: list[Node], sentinels: list[Node], version: str,
                 down_after_ms: int, failover_timeout_ms: int) -> None:
        self.master_name = MASTER_NAME
        self.password = password
        self.nodes = nodes
        self.sentinels = sentinels
        self.version = version
        self.backend = "binary"
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self._leases: list[PortLease] = []
        self._clients: list[Any] = []

    # -- addresses ---------------------------------------------------------------------------------
    def node_at(self, addr: tuple[str, Any]) -> Node:
        """The node whose peer proxy (announced address) is ``addr``."""
        for n in self.nodes:
            if int(n.peer.listen_port) == int(addr[1]):
                return n
        raise KeyError(f"no node of the topology announces {addr[0]}:{addr[1]}")

    def client_address(self, addr: tuple[str, Any]) -> tuple[str, int]:
        node = self.node_at(addr)
        return (node.client.listen_host, int(node.client.listen_port))

    # -- clients -------------------------------------------------------------------------------------
    def _sentinel(self, cls: type, retry: Callable[[], Any], socket_timeout: float, **kwargs: Any) -> Any:
        """``cls`` (a mapped Sentinel) through the sentinels' client proxies, authenticated, never retrying."""
        kwargs.setdefault("socket_connect_timeout", socket_timeout)
        kwargs.setdefault("retry", retry())
        sk = {"password": self.password, "socket_timeout": socket_timeout,
              "socket_connect_timeout": socket_timeout, "retry": retry()}
        addrs = [(s.client.listen_host, int(s.client.listen_port)) for s in self.sentinels]
        return cls(addrs, self.client_address, sentinel_kwargs=sk, password=self.password,
                   socket_timeout=socket_timeout, **kwargs)

    def sentinel(self, *, socket_timeout: float = 2.0, **kwargs: Any) -> MappedSentinel:
        """A redis-py ``Sentinel`` whose clients reach the nodes through their client proxies."""
        return self._sentinel(MappedSentinel, no_retry, socket_timeout, **kwargs)

    def master_client(self, **kwargs: Any) -> redis.Redis:
        """A Sentinel-managed client of the current primary (``Sentinel.master_for``)."""
        client = self.sentinel(**kwargs).master_for(self.master_name, check_connection=False)
        self._clients.append(client)
        return client

    def async_master_client(self, *, socket_timeout: float = 2.0, **kwargs: Any) -> Any:
        """``redis.asyncio`` twin of :meth:`master_client`; close it (``aclose``) on the loop that used it:
        that closes its links to the sentinels too (each call asks its own ``Sentinel``)."""
        from pytest_cbchaos.servers.redis import no_async_retry

        sentinel = self._sentinel(mapped_async_sentinel_class(), no_async_retry, socket_timeout, **kwargs)
        return sentinel.master_for(self.master_name)

    # -- state ---------------------------------------------------------------------------------------
    def sentinel_views(self) -> list[tuple[str, int] | None]:
        """Each sentinel's primary address as ``SENTINEL MASTER`` gives it (None: unreachable), direct links.

        This is what redis-py clients use (``SENTINEL MASTERS``); it switches at ``+switch-master``, after
        ``GET-MASTER-ADDR-BY-NAME`` already names the promoted replica."""
        out: list[tuple[str, int] | None] = []
        for s in self.sentinels:
            d = self.master_entry(s)
            try:
                out.append(None if d is None else (_s(d["ip"]), int(d["port"])))
            except (KeyError, ValueError):
                out.append(None)
        return out

    def master_entry(self, sentinel: Node) -> dict[str, Any] | None:
        """``SENTINEL MASTER`` as ``sentinel`` answers it on its direct link (None: unreachable)."""
        try:
            with sentinel.admin(socket_timeout=0.5, socket_connect_timeout=0.5) as c:
                return _pairs(c.execute_command("SENTINEL", "MASTER", self.master_name))
        except redis.RedisError:
            return None

    def failover_in_progress(self, sentinel: Node) -> bool:
        """Whether ``sentinel`` is running a failover (its master entry flags ``failover_in_progress``)."""
        d = self.master_entry(sentinel)
        return d is not None and "failover_in_progress" in _flags(d)

    def primary(self, *, unanimous: bool = False) -> Node:
        """The node a majority of sentinels name as primary (``unanimous``: every reachable sentinel; a
        client asks whichever sentinel answers first, so a test waits for all of them)."""
        views = [v for v in self.sentinel_views() if v is not None]
        for v in views:
            if views.count(v) >= (len(views) if unanimous else 1) and views.count(v) >= QUORUM:
                return self.node_at(v)
        raise TopologyNotReady(f"no sentinel {'agreement' if unanimous else 'majority'} on the primary: {views}")

    def replicas_of(self, primary: Node) -> list[Node]:
        return [n for n in self.nodes if n is not primary]

    def wait_primary(self, accept: Callable[[Node], bool], timeout: float, what: str) -> Node:
        """Poll until every reachable sentinel (at least a quorum) names a primary ``accept`` takes and that
        node says it is master."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                node = self.primary(unanimous=True)
                if accept(node) and node.role_now() == "master":
                    return node
                last = node.name
            except (TopologyNotReady, redis.RedisError, KeyError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise TopologyNotReady(f"{what}: not reached within {timeout:.1f}s (last: {last})\n"
                                       f"{self.sentinel_logs()}")
            time.sleep(0.02)  # polling interval, bounded by the deadline

    def sentinel_logs(self, n: int = 8) -> str:
        """The last ``n`` lines of each sentinel's log (for failure messages)."""
        return "\n".join(f"--- {s.name}:\n{s.process.log_tail(n) if s.process else '<not started>'}"
                         for s in self.sentinels)

    def wait_ready(self, timeout: float) -> float:
        """Until replication is caught up and every sentinel agrees on the primary and knows every peer.

        Returns the seconds waited."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = "not checked"
        while True:
            last = self._not_ready() or ""
            if not last:
                return time.monotonic() - t0
            if time.monotonic() >= deadline:
                raise TopologyNotReady(f"sentinel topology not ready after {timeout:.1f}s: {last}")
            time.sleep(0.02)  # polling interval, bounded by the deadline

    def _not_ready(self) -> str | None:
        try:
            primary = self.primary(unanimous=True)
            with primary.admin() as c:
                info = c.info("replication")
            if info["role"] != "master":
                return f"{primary.name} is {info['role']}"
            offset = int(info["master_repl_offset"])
            for r in self.replicas_of(primary):
                with r.admin() as c:
                    ri = c.info("replication")
                if ri.get("master_link_status") != "up" or int(ri.get("slave_repl_offset", -1)) < offset:
                    return f"{r.name} replication not caught up ({ri.get('master_link_status')})"
            for s in self.sentinels:
                with s.admin() as c:
                    reps = c.execute_command("SENTINEL", "REPLICAS", self.master_name)
                    peers = c.execute_command("SENTINEL", "SENTINELS", self.master_name)
                flags = [_flags(r) for r in reps]
                if len(flags) != len(self.nodes) - 1 or any(f != {"slave"} for f in flags):
                    return f"{s.name} sees replicas {flags}"
                pflags = [_flags(p) for p in peers]
                if len(pflags) != len(self.sentinels) - 1 or any(f != {"sentinel"} for f in pflags):
                    return f"{s.name} sees sentinels {pflags}"
        except (redis.RedisError, TopologyNotReady, KeyError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def servers(self) -> list[Node]:
        return [*self.nodes, *self.sentinels]

    def primaries_now(self) -> list[Node]:
        return [self.primary()]

    def _started_again(self, node: Node) -> None:
        if node.role == "sentinel":
            _tune(node)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _pairs(entry: Any) -> dict[str, Any]:
    """A sentinel reply entry as a dict (redis-py parses some SENTINEL replies, not others)."""
    if isinstance(entry, dict):
        return {_s(k): v for k, v in entry.items()}
    return {_s(entry[i]): entry[i + 1] for i in range(0, len(entry), 2)}


def _flags(entry: Any) -> set[str]:
    flags = _pairs(entry).get("flags", "")
    return set(flags) if isinstance(flags, (set, list, tuple)) else set(_s(flags).split(","))


def _sentinel_conf(s: Node, primary: Node, replicas: list[Node], others: list[Node], down_after_ms: int,
                   failover_timeout_ms: int) -> str:
    host, pport = primary.peer_addr
    lines = [f"port {s.port}", "bind 127.0.0.1", f"dir {s.dir}", f"requirepass {s.password}",
             f"sentinel myid {s.myid}", "sentinel resolve-hostnames no",
             f"sentinel announce-ip {s.peer.listen_host}", f"sentinel announce-port {s.peer.listen_port}",
             f"sentinel monitor {MASTER_NAME} {host} {pport} {QUORUM}",
             f"sentinel auth-pass {MASTER_NAME} {s.password}",
             f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
             f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}",
             f"sentinel parallel-syncs {MASTER_NAME} {len(replicas)}"]
    lines += [f"sentinel known-replica {MASTER_NAME} {r.peer.listen_host} {r.peer.listen_port}" for r in replicas]
    lines += [f"sentinel known-sentinel {MASTER_NAME} {o.peer.listen_host} {o.peer.listen_port} {o.myid}"
              for o in others]
    return "\n".join(lines) + "\n"


def _tune(sentinel: Node) -> None:
    """Apply :data:`SENTINEL_DEBUG` (not persisted: again after every start)."""
    args = [x for kv in SENTINEL_DEBUG.items() for x in (kv[0], str(kv[1]))]
    with sentinel.admin() as c:
        c.execute_command("SENTINEL", "DEBUG", *args)


def _staggered(down_after_ms: int, k: int) -> int:
    """Sentinel ``k``'s ``down-after-milliseconds``: the sentinels see a primary down one after another, so they
    rarely all stand for leader at once (a split vote delays the failover by ``2 x failover-timeout``)."""
    return down_after_ms + k * down_after_ms // 2


def _ping(node: Node) -> Callable[[ManagedProcess], bool]:
    def probe(_: ManagedProcess) -> bool:
        with node.admin(socket_timeout=1.0, socket_connect_timeout=1.0) as c:
            return bool(c.ping())
    return probe


# what each topology needs of redis-server 7.0+
NEEDS_7 = {"sentinel": "SENTINEL DEBUG", "cluster": "cluster-port, CLUSTER ADDSLOTSRANGE"}


def topology_binary(executable: str | None = None, topology: str = "sentinel") -> tuple[str, str]:
    """(redis-server path, version) able to run ``topology`` (``sentinel`` or ``cluster``), or
    :class:`BackendUnavailable` saying why not.

    Sentinel mode is ``redis-server --sentinel`` (no separate package); both topologies need 7.0+."""
    executable = executable or shutil.which("redis-server")
    if not executable:
        raise BackendUnavailable(f"the {topology} topology needs the redis-server binary; {INSTALL_HINT}")
    version = redis_binary_version(executable)
    if tuple(int(p) for p in version.split(".")[:1] if p.isdigit()) < (7,):
        raise BackendUnavailable(f"the {topology} topology needs redis-server >= 7.0 ({NEEDS_7[topology]}); "
                                 f"{executable} is {version}")
    return executable, version


def check_topology_params(replicas: Any, down_after_ms: Any, failover_timeout_ms: Any) -> None:
    check_int_params("sentinel", {"replicas": (replicas, 1), "down_after_ms": (down_after_ms, 50),
                                  "failover_timeout_ms": (failover_timeout_ms, 100)})


def start_sentinel_topology(
    *,
    workdir: Path,
    create_proxy: Callable[[str, str], Any],
    executable: str | None = None,
    replicas: int = 2,
    port_range: tuple[int, int] = DEFAULT_RANGE,
    startup_timeout: float = 10.0,
    down_after_ms: int = 500,
    failover_timeout_ms: int = 2000,
) -> SentinelTopology:
    """Start the topology and wait until it is ready; ``create_proxy(name, "host:port")`` makes a fault proxy.

    Raises :class:`BackendUnavailable` where no redis-server binary exists (7.0+ for ``SENTINEL DEBUG``)."""
    check_topology_params(replicas, down_after_ms, failover_timeout_ms)
    executable, version = topology_binary(executable)
    password = secrets.token_hex(16)
    tag = secrets.token_hex(3)
    topo = SentinelTopology(password, [], [], version, down_after_ms, failover_timeout_ms)
    try:
        for i in range(replicas + 1 + SENTINELS):
            lease = allocate_port(port_range)
            topo._leases.append(lease)
            role = "redis" if i <= replicas else "sentinel"
            name = f"redis-{i}" if role == "redis" else f"sentinel-{i - replicas - 1}"
            upstream = f"127.0.0.1:{lease.port}"
            node = Node(name, role, lease.port, password, create_proxy(f"sent-{tag}-{name}-peer", upstream),
                        create_proxy(f"sent-{tag}-{name}-client", upstream), myid=secrets.token_hex(20))
            (topo.nodes if role == "redis" else topo.sentinels).append(node)
        primary = topo.nodes[0]
        for i, n in enumerate(topo.nodes):
            args = ["--masterauth", password, "--replica-announce-ip", n.peer.listen_host,
                    "--replica-announce-port", str(n.peer.listen_port), "--repl-diskless-sync", "yes",
                    "--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"]
            if i:
                args += ["--replicaof", primary.peer.listen_host, str(primary.peer.listen_port)]
            lease = topo._leases[i]
            n.server = _start_binary(executable, Path(workdir) / n.name, port_range, startup_timeout,
                                     extra_args=args, lease=lease, password=password)
            n.process, n.dir = n.server.process, n.server.dir
            n.server.lease = None  # the topology holds the lease
        for k, s in enumerate(topo.sentinels):
            s.dir = Path(workdir) / s.name
            s.dir.mkdir(parents=True, exist_ok=True)
            conf = s.dir / "sentinel.conf"
            conf.write_text(_sentinel_conf(s, primary, topo.nodes[1:], [o for o in topo.sentinels if o is not s],
                                           _staggered(down_after_ms, k), failover_timeout_ms))
            s.process = ManagedProcess(s.name, [executable, str(conf), "--sentinel"], log_dir=s.dir,
                                       ready=_ping(s), startup_timeout=startup_timeout)
            s.process.start()
            _tune(s)
        topo.wait_ready(startup_timeout)
    except BaseException:
        topo.stop()
        raise
    return topo
