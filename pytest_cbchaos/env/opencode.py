"""The one opencode rig: the mock provider, ``opencode serve`` pointed at it, and its REST (control)
and ``/event`` (events) planes behind two fault-proxy listeners (docs/recovery.md).
"""

from __future__ import annotations

from typing import Any

from pytest_cbchaos.servers.opencode import OpencodeServer

OPENCODE_STARTUP_FLOOR_S = 60.0  # opencode's first start unpacks and indexes: seconds even on a quiet machine


def leave_clean(server: OpencodeServer, timeout: float = 10.0) -> None:
    """Bring a killed/stopped server back and abort busy sessions (between tests)."""
    live = server.liveness().value
    if live == "stopped":
        server.resume()
    if live in ("dead", "unknown") or not server.alive:
        server.restart()
        return
    try:
        server.abort_all(timeout)
    except Exception:
        server.restart()  # a server that cannot settle its sessions is replaced


class OpencodeProxied:
    """The server reached through two fault-proxy listeners; usable as a runner's server handle."""

    def __init__(self, server: OpencodeServer, control: Any, events: Any) -> None:
        self.server = server
        self.control = control
        self.events = events

    # handle protocol (recovery/handle.py reads these)
    @property
    def base_url(self) -> str:
        return f"http://{self.control.listen_host}:{self.control.listen_port}"

    @property
    def control_url(self) -> str:
        return self.base_url

    @property
    def events_url(self) -> str:
        return f"http://{self.events.listen_host}:{self.events.listen_port}"

    @property
    def direct_url(self) -> str:
        return self.server.base_url

    def __getattr__(self, name: str) -> Any:  # auth, headers, password, project_dir, pid, generation, ...
        return getattr(self.server, name)

    def liveness(self) -> Any:
        return self.server.liveness()

    def sync_upstream(self) -> None:
        """Point both proxies at the server's current port (after a restart on a new port)."""
        upstream = f"127.0.0.1:{self.server.port}"
        for proxy in (self.control, self.events):
            if proxy.upstream != upstream:
                proxy._update({"upstream": upstream})

    def restart(self, **kw: Any) -> "OpencodeProxied":
        self.server.restart(**kw)
        self.sync_upstream()
        return self

    def client(self, timeout: float = 10.0) -> Any:
        return self.server.client(timeout, base_url=self.base_url)


class OpencodeRig:
    """A started ``opencode serve`` on the environment's mock provider, with control/events proxies."""

    def __init__(self, env: Any) -> None:
        self.mock = env.mock_llm()
        self.server: Any = None
        self.proxies: list[Any] = []
        self.warmed = False
        try:
            self.server = env.launch_opencode(self.mock)
            tox = env.toxiproxy()
            upstream = f"127.0.0.1:{self.server.port}"
            self.control = tox.create_proxy("opencode-control", upstream)
            self.proxies.append(self.control)
            self.events = tox.create_proxy("opencode-events", upstream)
            self.proxies.append(self.events)
            self.handle = OpencodeProxied(self.server, self.control, self.events)
        except BaseException:
            self.stop()
            raise

    def warm(self) -> None:
        """The first turn of a fresh instance bootstraps it for seconds without events: pay it once."""
        if self.warmed:
            return
        from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner
        from pytest_cbchaos.servers.mockllm import text

        self.mock.set_default([text("warm", chunks=1)])
        with RecoveryRunner(self.handle, RecoveryConfig.for_tests(stall_timeout=60, start_timeout=60)) as runner:
            res = runner.run_turn("warm up")
        if int(res.status) != 0:
            raise RuntimeError(f"opencode warm-up turn failed: status {res.status!r} ({res.error})")
        self.warmed = True

    def prepare(self) -> None:
        """Clean state for the next use: gates released, toxics gone, a live unpaused server, no busy session."""
        self.mock.release_all()
        for proxy in self.proxies:
            proxy.reset()
        leave_clean(self.server)
        self.handle.sync_upstream()

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        self.proxies = []
        if self.server is not None:
            try:
                self.server.stop()
            except Exception:
                pass
        try:
            self.mock.release_all()
        except Exception:
            pass

