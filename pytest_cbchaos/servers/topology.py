"""What every multi-server Redis topology shares (Sentinel, Cluster; docs/redis-topologies.md): reviving
what a test killed or paused, the per-use hygiene, its fault proxies, and the teardown."""

from __future__ import annotations

from typing import Any, Iterator


class ServerGroup:
    """Base of :class:`~.sentinel.SentinelTopology` and :class:`~.cluster.ClusterTopology`."""

    nodes: list[Any]
    _leases: list[Any]
    _clients: list[Any]

    def servers(self) -> list[Any]:
        """Every server of the topology, in start order."""
        return list(self.nodes)

    def primaries_now(self) -> list[Any]:
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> float:
        raise NotImplementedError

    def _started_again(self, node: Any) -> None:
        """Per-server setup that does not survive a restart (none by default)."""

    def revive(self) -> None:
        """Every server a test killed or paused runs again (the topology then converges by itself)."""
        for n in self.servers():
            if n.process is None:
                continue
            n.process.resume()
            if not n.process.alive:
                n.process.start()
                self._started_again(n)

    def clean(self, timeout: float = 15.0) -> None:
        """Per-use hygiene: every server running, every proxy reset, the topology ready, the data flushed."""
        self.revive()
        for proxy in self.proxies():
            proxy.reset()
        self.wait_ready(timeout)
        for n in self.primaries_now():
            with n.admin() as admin:
                admin.flushall()
        self.wait_ready(timeout)

    def proxies(self) -> Iterator[Any]:
        for n in self.servers():
            yield from n.proxies()

    def stop(self) -> None:
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        for n in reversed(self.servers()):
            if n.server is not None:
                n.server.stop()
            elif n.process is not None:
                n.process.stop()
        for p in self.proxies():
            p.close()
        for lease in self._leases:
            lease.release()
        self._leases.clear()


def check_int_params(topology: str, params: dict[str, tuple[Any, int]]) -> None:
    """Each ``key: (value, low)`` an int (not a bool) >= ``low``, else a ValueError naming the key and value."""
    for key, (value, low) in params.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{topology} topology: {key}={value!r}, expected an int >= {low}")
