"""Process faults on one server of a multi-server topology (Sentinel, Cluster; docs/redis-topologies.md#the-nemesis):
and replication lag: journaled windows of the test's :class:`~.controller.FaultController`, healed at teardown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_cbchaos.faults.controller import FaultParameterError

if TYPE_CHECKING:  # pragma: no cover
    from pytest_cbchaos.faults.controller import Fault, FaultController  # noqa: F401


LAG_TOXIC = "cbchaos_replication_lag"


def check_lag_ms(ms: Any) -> None:
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 1:
        raise FaultParameterError(f"replication_lag: ms={ms!r}, expected an int >= 1 (milliseconds)")


class TopologyNemesis:
    """``kill``, ``pause`` and ``replication_lag``; the base of the Sentinel and Cluster nemeses."""

    def __init__(self, controller: "FaultController", topology: Any, *, timeout: float = 15.0) -> None:
        self._c = controller
        self.topology = topology
        self.timeout = timeout

    def _node(self, node: Any) -> Any:
        if not isinstance(node, str):
            return node
        servers = self.topology.servers()
        for n in servers:
            if n.name == node:
                return n
        raise ValueError(f"nemesis: no node named {node!r}; expected one of {', '.join(n.name for n in servers)}")

    def kill(self, node: Any) -> "Fault":
        """SIGKILL a server; healing restarts it (a restarted node has no data: no persistence)."""
        from pytest_cbchaos.faults.controller import Fault

        n = self._node(node)
        window = self._c.journal.begin("kill", n.name, {"role": n.role})
        self._c._start(window, n.process.kill)
        return self._c._track(Fault(self._c, window, self.topology.revive, order=0))

    def pause(self, node: Any) -> "Fault":
        """SIGSTOP a server; SIGCONT when healed."""
        from pytest_cbchaos.faults.controller import Fault

        n = self._node(node)
        window = self._c.journal.begin("pause", n.name, {"role": n.role})
        self._c._start(window, n.process.pause)
        return self._c._track(Fault(self._c, window, n.process.resume, order=0))

    def replication_lag(self, ms: int, primary: Any = None) -> "Fault":
        """Delay what a primary sends its replicas by ``ms``: a latency toxic on the downstream of its peer
        proxy (the address replicas replicate from). ``primary``: a node or name; default every current
        primary. Healing removes the toxic; what it held back is then delivered at once."""
        from pytest_cbchaos.faults.controller import Fault

        nodes = [self._node(primary)] if primary is not None else list(self.topology.primaries_now())
        names = [n.name for n in nodes]
        window = self._c.journal.begin("replication_lag", ",".join(names), {"ms": ms, "primaries": names})

        def heal() -> None:
            for n in nodes:
                if any(t.name == LAG_TOXIC for t in n.peer.toxics()):
                    n.peer.remove_toxic(LAG_TOXIC)

        def add() -> None:
            check_lag_ms(ms)
            try:
                for n in nodes:
                    n.peer.add_toxic("latency", stream="downstream", name=LAG_TOXIC, latency=ms)
            except BaseException:
                heal()
                raise

        self._c._start(window, add)
        return self._c._track(Fault(self._c, window, heal))
