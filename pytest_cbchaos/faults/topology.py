"""Process faults on one server of a multi-server topology (Sentinel, Cluster; docs/redis-topologies.md#the-nemesis):
journaled windows of the test's :class:`~.controller.FaultController`, healed at teardown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pytest_cbchaos.faults.controller import Fault, FaultController


class TopologyNemesis:
    """``kill`` and ``pause`` of a server by object or name; the base of the Sentinel and Cluster nemeses."""

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
