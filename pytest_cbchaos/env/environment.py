"""``Environment``: settings -> servers, proxies and leases, decided once (docs/architecture.md).

Shared objects (``toxiproxy()``, ``redis()``, ``proxy()``, ``mock_llm()``, ``opencode()``) are started
lazily, once per environment, reset between uses by :meth:`Environment.reset` and stopped by
:meth:`Environment.stop`. ``launch_redis`` / ``launch_toxiproxy`` start extra servers the caller owns
(the factories' instances). Images, binaries, the rootdir and "required under CI" are read here only.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from pytest_cbchaos.servers.ports import PortRangeError
from pytest_cbchaos.settings import Settings


class Unavailable(Exception):
    """A server the run asked for cannot start: a usage error for fixtures, a skip for a scenario.

    ``required`` (env ``CI`` set and the real server is mandatory there): the caller fails instead of skipping.
    """

    def __init__(self, reason: str, *, required: bool = False) -> None:
        super().__init__(reason)
        self.required = required


class Environment:
    """Servers, proxies and leases of one pytest process (or one ``cbchaos`` command)."""

    def __init__(self, settings: Settings, workdir: Path, *, rootdir: Path | None = None,
                 worker: str = "master") -> None:
        self.settings, self.workdir, self.rootdir, self.worker = settings, Path(workdir), rootdir, worker
        self._lock = threading.RLock()  # servers and proxies
        self._shared_lock = threading.RLock()  # shared builds (slow: opencode) never hold up the servers
        self._shared: dict[str, Any] = {}
        self._prestarts: list[threading.Thread] = []
        self._redis: dict[tuple[str, str, str], Any] = {}  # (backend, persistence, role)
        self._proxies: dict[str, Any] = {}
        self._toxiproxy: Any = None
        self._stopped = False

    @classmethod
    def from_settings(cls, settings: Settings, workdir: Path, *, rootdir: Path | None = None,
                      worker: str = "master") -> "Environment":
        return cls(settings, workdir, rootdir=rootdir, worker=worker)

    @property
    def required(self) -> bool:
        """Under CI a missing real server is a failure, not a skip."""
        return bool(os.environ.get("CI"))

    def _dir(self, name: str) -> Path:
        """A fresh directory for one server (its logs and data)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))

    # -- servers the caller owns ------------------------------------------------------------------
    def launch_toxiproxy(self, backend: str | None = None, *, name: str = "toxiproxy") -> Any:
        """A new Toxiproxy-compatible server (``ToxiproxyServer``); the caller stops it."""
        from pytest_cbchaos.servers.toxiproxy import BackendUnavailable, start_toxiproxy

        s = self.settings
        try:
            return start_toxiproxy(backend or s.proxy_backend, workdir=self._dir(name), port_range=s.port_range,
                                   binary=s.toxiproxy_bin, url=s.toxiproxy_url, image=s.toxiproxy_image,
                                   seed=s.seed, startup_timeout=s.startup_timeout, worker=self.worker)
        except (BackendUnavailable, PortRangeError) as exc:
            raise Unavailable(str(exc)) from None

    def launch_redis(self, backend: str | None = None, *, name: str = "redis", persistence: str = "none") -> Any:
        """A new Redis server (``RedisServer``); the caller stops it."""
        from pytest_cbchaos.servers.redis import BackendUnavailable, start_redis

        s = self.settings
        try:
            return start_redis(backend or s.redis_backend, workdir=self._dir(name), executable=s.redis_exec,
                               url=s.redis_url, port_range=s.port_range, startup_timeout=s.startup_timeout,
                               image=s.redis_image, persistence=persistence)
        except (BackendUnavailable, PortRangeError) as exc:
            raise Unavailable(str(exc)) from None

    def launch_sentinel(self, *, replicas: int = 2, down_after_ms: int = 500, failover_timeout_ms: int = 2000,
                        name: str = "sentinel") -> Any:
        """A new Sentinel-managed replicated Redis (``SentinelTopology``, docs/redis-topologies.md); its proxies live
        on the worker's Toxiproxy-compatible server; the caller stops it. Needs the redis-server binary."""
        from pytest_cbchaos.servers.sentinel import start_sentinel_topology

        return self._topology(start_sentinel_topology, "sentinel", name, replicas=replicas, down_after_ms=down_after_ms,
                              failover_timeout_ms=failover_timeout_ms)

    def launch_cluster(self, *, shards: int = 3, node_timeout_ms: int = 1000, name: str = "cluster") -> Any:
        """A new Redis Cluster, ``shards`` primaries with a replica each (``ClusterTopology``,
        docs/redis-topologies.md#redis-cluster); the caller stops it. Needs the redis-server binary."""
        from pytest_cbchaos.servers.cluster import start_cluster_topology

        return self._topology(start_cluster_topology, "cluster", name, shards=shards, node_timeout_ms=node_timeout_ms)

    def _topology(self, start: Callable[..., Any], kind: str, name: str, **kw: Any) -> Any:
        """``start(...)`` of a multi-server topology (``kind``: sentinel or cluster) whose proxies live on the
        worker's proxy server."""
        from pytest_cbchaos.servers.redis import BackendUnavailable
        from pytest_cbchaos.servers.sentinel import topology_binary

        s = self.settings
        if s.redis_backend not in ("auto", "binary"):
            raise Unavailable(f"the {name} topology needs the binary Redis backend "
                              f"(--cbchaos-redis-backend is {s.redis_backend!r})")
        try:
            topology_binary(s.redis_exec, kind)  # before the proxy server: no server started for a topology that cannot run
            server = self.toxiproxy()
            return start(workdir=self._dir(name), create_proxy=server.create_proxy, executable=s.redis_exec,
                         port_range=s.port_range, startup_timeout=s.startup_timeout, **kw)
        except (BackendUnavailable, PortRangeError) as exc:
            raise Unavailable(str(exc), required=self.required) from None

    def launch_opencode(self, mock: Any, *, name: str = "opencode") -> Any:
        """A new started ``opencode serve`` (``OpencodeServer``) whose model provider is ``mock``; the caller stops it.

        Raises :class:`Unavailable` without an opencode binary (``required`` under CI)."""
        from pytest_cbchaos.env.opencode import OPENCODE_STARTUP_FLOOR_S
        from pytest_cbchaos.servers.opencode import OpencodeServer

        s = self.settings
        server = OpencodeServer(root=self._dir(name), binary=self.opencode_binary(), provider_url=mock.base_url,
                                provider_key=mock.api_key,
                                startup_timeout=max(OPENCODE_STARTUP_FLOOR_S, float(s.startup_timeout)),
                                port_range=tuple(s.port_range))
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        return server

    # -- shared objects -----------------------------------------------------------------------------
    def shared(self, key: str, build: Callable[["Environment"], Any]) -> Any:
        """A worker-wide object built once by ``build(env)`` and stopped with the environment.

        A failed build is not cached: the next caller tries again (and reports the same error)."""
        with self._shared_lock:
            if self._stopped:
                raise Unavailable("the environment is stopped")
            if key not in self._shared:
                self._shared[key] = build(self)
            return self._shared[key]

    def prestart(self, key: str, build: Callable[["Environment"], Any]) -> None:
        """Build a shared object in the background (e.g. while other scenarios run); errors surface later."""
        def work() -> None:
            try:
                self.shared(key, build)
            except BaseException:
                pass  # whoever needs it builds it again and reports the error

        t = threading.Thread(target=work, name=f"cbchaos-prestart-{key}", daemon=True)
        self._prestarts.append(t)
        t.start()

    def sentinel(self, replicas: int = 2) -> Any:
        """The worker's shared Sentinel topology with ``replicas`` replicas (fixture and scenarios share it)."""
        return self.shared(f"redis-sentinel:{replicas}", lambda env: env.launch_sentinel(replicas=replicas))

    def cluster(self, shards: int = 3) -> Any:
        """The worker's shared Redis Cluster with ``shards`` primaries (one replica each)."""
        return self.shared(f"redis-cluster:{shards}", lambda env: env.launch_cluster(shards=shards))

    def toxiproxy(self) -> Any:
        with self._lock:
            if self._toxiproxy is None:
                self._toxiproxy = self.launch_toxiproxy()
            return self._toxiproxy

    def redis(self, backend: str | None = None, *, persistence: str = "none") -> Any:
        """The shared Redis of ``backend`` (default: the settings'); a server a test killed is brought back."""
        return self._shared_redis((backend or self.settings.redis_backend, persistence, "shared"))

    def durable_redis(self) -> Any:
        """A second shared Redis whose acknowledged writes survive SIGKILL (AOF ``always``) where the
        backend allows it (redis-server); elsewhere the same backend without persistence (docs/stream.md)."""
        backend = self.settings.redis_backend
        if backend not in ("auto", "binary"):
            return self._shared_redis((backend, "none", "durable"))
        try:
            return self._shared_redis((backend, "aof-always", "durable"))
        except Unavailable:
            return self._shared_redis((backend, "none", "durable"))  # no redis-server binary: embedded

    def _shared_redis(self, key: tuple[str, str, str]) -> Any:
        with self._lock:
            if key not in self._redis:
                self._redis[key] = self.launch_redis(key[0], name="-".join(("redis", *key)), persistence=key[1])
            server = self._redis[key]
        _revive(server)
        return server

    def proxy(self, name: str, upstream: str) -> Any:
        """The shared proxy ``name`` in front of ``host:port``, reset (no toxics, enabled) before it is handed out."""
        server = self.toxiproxy()
        key = f"{name}->{upstream}"
        with self._lock:
            if key not in self._proxies:
                self._proxies[key] = server.create_proxy(name, upstream)
            proxy = self._proxies[key]
        proxy.reset()
        return proxy

    def mock_llm(self) -> Any:
        """The shared scriptable model provider (``MockLLM``)."""
        from pytest_cbchaos.servers.mockllm import MockLLM

        return self.shared("mock-llm", lambda env: MockLLM().start())

    def opencode_binary(self) -> Any:
        """The opencode binary the one search finds (setting, project-local ``.cbchaos-node``, PATH)."""
        from pytest_cbchaos.servers.opencode import discover_opencode

        found = discover_opencode(self.settings.opencode_bin, self.rootdir,
                                  source=self.settings.source("opencode_bin"))
        if found.binary is None:
            raise Unavailable(found.reason(), required=self.required)
        return found.binary

    def opencode_unavailable(self) -> str | None:
        """Why opencode cannot run here (raises :class:`Unavailable` with ``required`` under CI), or None."""
        try:
            self.opencode_binary()
        except Unavailable as exc:
            if exc.required:
                raise
            return str(exc)
        return None

    def opencode(self, *, warm: bool = False) -> Any:
        """The one opencode rig: the mock provider, ``opencode serve`` and its control/events proxies."""
        from pytest_cbchaos.env.opencode import OpencodeRig

        rig = self.shared("opencode", OpencodeRig)
        if warm:
            rig.warm()
        return rig

    # -- hygiene ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Per-test hygiene of what was started: proxies cleaned, Redis revived and emptied, opencode clean."""
        with self._lock:
            proxies = list(self._proxies.values())
            redis_servers = list(self._redis.values())
        with self._shared_lock:
            rig = self._shared.get("opencode")
            mock = self._shared.get("mock-llm")
        for proxy in proxies:
            proxy.reset()
        for server in redis_servers:
            _revive(server)
            with server.client() as admin:
                admin.flushall()
        if mock is not None:
            mock.release_all()
        if rig is not None:
            rig.prepare()

    def backends(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for server in self._redis.values():
            out["redis"] = {"name": server.backend, "version": server.version}
        if self._toxiproxy is not None:
            out["proxy"] = {"name": self._toxiproxy.backend, "version": self._toxiproxy.version}
        return out

    def stop(self) -> None:
        with self._shared_lock:  # waits for a background build, then no new one starts
            self._stopped = True
            shared = list(self._shared.items())
            self._shared.clear()
        with self._lock:
            proxies = list(self._proxies.values())
            self._proxies.clear()
            redis_servers = list(self._redis.values())
            self._redis.clear()
            toxiproxy, self._toxiproxy = self._toxiproxy, None
        for key, obj in sorted(shared, key=lambda kv: kv[0] == "mock-llm"):  # the rig before its provider
            try:
                obj.stop()
            except Exception:
                pass
        for proxy in proxies:
            proxy.close()
        if toxiproxy is not None:
            toxiproxy.stop()
        for server in redis_servers:
            server.stop()


def _revive(server: Any) -> None:
    """A managed server a test killed or paused is running again afterwards."""
    proc = server.process
    if proc is None:
        return
    try:
        proc.resume()
    except Exception:
        pass
    if not proc.alive:
        proc.start()
