"""The real-opencode test environment of tests/recovery and tests/stateful: a view of the worker's one
opencode rig (``Environment.opencode()``, docs/opencode.md) with the scripting the recovery tests use.

It implements :class:`pytest_cbchaos.stateful.recovery_machine.RecoveryChaosEnv`.
"""

from __future__ import annotations

import time
from typing import Any

from pytest_cbchaos.env import Environment
from pytest_cbchaos.plugin.factories import started_or_skip
from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner
from pytest_cbchaos.servers import mockllm as m


class OpencodeEnv:
    """The rig's mock (``llm``), server, control/events proxies and runner handle, cleaned between tests."""

    def __init__(self, rig: Any, stall_timeout: float = 2.0) -> None:
        self.rig = rig
        self.llm: m.MockLLM = rig.mock
        self.server = rig.server
        self.control, self.events = rig.control, rig.events
        self.stall_timeout = stall_timeout
        self.runner_class: type[RecoveryRunner] = RecoveryRunner

    @classmethod
    def of(cls, env: Environment) -> "OpencodeEnv":
        """The worker's rig, warmed by one turn (a fresh instance's first turn bootstraps for seconds);
        skips without opencode (fails under CI)."""
        return cls(started_or_skip(lambda: env.opencode(warm=True)))

    def target(self) -> Any:
        """The runner's server handle: both planes through the fault proxies; ``restart()`` re-points them."""
        return self.rig.handle

    def runner(self, **cfg: Any) -> RecoveryRunner:
        return RecoveryRunner(self.target(), RecoveryConfig.for_tests(**cfg))

    def clean(self) -> None:
        """Leave the shared rig clean: no toxics, a live unpaused server without busy sessions, no scripts."""
        self.rig.prepare()
        self.llm.reset()

    def main_requests(self) -> list[m.RequestRecord]:
        return [r for r in self.llm.requests if r.kind == "main"]

    # -- RecoveryChaosEnv ------------------------------------------------------------------------
    def make_runner(self, **config: Any) -> RecoveryRunner:
        config.setdefault("stall_timeout", self.stall_timeout)
        config.setdefault("probe_timeout", 0.5)
        return self.runner_class(self.target(), RecoveryConfig.for_tests(**config))

    def script_text(self, text: str, *, chunks: int = 1, delay: float = 0.0) -> None:
        self.llm.script("main", [m.text(text, chunks=chunks, delay=delay)])

    def script_stall(self, text: str = "stalled") -> None:
        self.llm.script("main", m.stall_midway(text))

    def script_http_error(self, status: int, retry_after: float | None = None) -> None:
        self.llm.script("main", [m.http_error(status, retry_after=retry_after)])

    def release_provider(self) -> None:
        self.llm.release_all()

    def wait_provider_stalled(self, timeout: float) -> None:
        self.llm.wait_stalled("main", timeout)

    def provider_main_requests(self) -> list[Any]:
        return self.main_requests()

    def kill_server(self) -> None:
        self.server.kill()

    def wait_server_idle(self, timeout: float) -> bool:
        """The last model request finished and opencode lists no busy session (asked directly, no proxy)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reqs = self.main_requests()
            if reqs and reqs[-1].finished_at is not None:
                try:
                    if not self.server.request("GET", "/session/status", timeout=2).json():
                        return True
                except Exception:
                    pass
            time.sleep(0.05)  # bounded poll of the server's own status
        return False

    def pause_server(self) -> None:
        self.server.pause()

    def resume_server(self) -> None:
        self.server.resume()

    def add_toxic(self, plane: str, type: str, stream: str = "downstream", **attributes: Any) -> Any:
        proxy = self.control if plane == "control" else self.events
        return proxy.add_toxic(type, stream=stream, **attributes)

    def remove_toxic(self, plane: str, toxic: Any) -> None:
        proxy = self.control if plane == "control" else self.events
        try:
            proxy.remove_toxic(toxic.name)
        except Exception:
            pass
