"""The real-opencode test environment shared by tests/recovery and tests/stateful (one per worker).

It also implements :class:`pytest_cbchaos.stateful.recovery_machine.RecoveryChaosEnv`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner, ServerTarget
from tests.recovery.harness import MiniLLM, OpencodeProc, Plan, opencode_available


@dataclass
class OpencodeEnv:
    llm: MiniLLM
    server: OpencodeProc
    control: Any  # fault proxy for REST calls
    events: Any  # fault proxy for /event
    stall_timeout: float = 2.0
    runner_class: type[RecoveryRunner] = RecoveryRunner

    def target(self) -> ServerTarget:
        return ServerTarget(handle=self.server,
                            base_url=lambda: f"http://127.0.0.1:{self.control.listen_port}",
                            events_url=lambda: f"http://127.0.0.1:{self.events.listen_port}")

    def runner(self, **cfg: Any) -> RecoveryRunner:
        return RecoveryRunner(self.target(), RecoveryConfig.for_tests(**cfg))

    def retarget(self) -> None:
        upstream = f"127.0.0.1:{self.server.port}"
        for proxy in (self.control, self.events):
            if proxy.upstream != upstream:
                proxy._update({"upstream": upstream})

    def clean(self) -> None:
        """Leave the shared server clean: no toxics, not paused, alive, no gate open."""
        self.llm.release_all()
        for proxy in (self.control, self.events):
            for toxic in proxy.toxics():
                proxy.remove_toxic(toxic.name)
        if self.server.proc is not None and self.server.proc.paused:
            self.server.resume()
        if self.server.liveness().value == "dead":
            self.server.restart()
        self.retarget()
        self.llm.reset()

    # -- RecoveryChaosEnv ------------------------------------------------------------------------
    def make_runner(self, **config: Any) -> RecoveryRunner:
        config.setdefault("stall_timeout", self.stall_timeout)
        config.setdefault("probe_timeout", 0.5)
        return self.runner_class(self.target(), RecoveryConfig.for_tests(**config))

    def script_text(self, text: str, *, chunks: int = 1, delay: float = 0.0) -> None:
        self.llm.script(Plan(text=text, chunks=chunks, delay=delay))

    def script_stall(self, text: str = "stalled") -> None:
        self.llm.script(Plan(text=text, chunks=2, stall_after=1))

    def script_http_error(self, status: int, retry_after: float | None = None) -> None:
        self.llm.script(Plan(http_status=status, retry_after=retry_after))

    def release_provider(self) -> None:
        self.llm.release_all()

    def wait_provider_stalled(self, timeout: float) -> None:
        self.llm.wait_stalled(timeout)

    def provider_main_requests(self) -> list[Any]:
        return self.llm.main_requests()

    def kill_server(self) -> None:
        self.server.kill()

    def wait_server_idle(self, timeout: float) -> bool:
        """The last model request finished and opencode lists no busy session (asked directly, no proxy)."""
        import json
        import urllib.request
        from base64 import b64encode

        user, password = self.server.auth
        headers = {**self.server.headers, "Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reqs = self.llm.main_requests()
            if reqs and reqs[-1].finished_at is not None:
                try:
                    req = urllib.request.Request(f"{self.server.base_url}/session/status", headers=headers)
                    with urllib.request.urlopen(req, timeout=2) as resp:
                        if not json.loads(resp.read() or b"{}"):
                            return True
                except OSError:
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


_ENV: OpencodeEnv | None = None


def shared_env(toxiproxy: Any, tmp_path_factory: pytest.TempPathFactory,
               request: pytest.FixtureRequest) -> OpencodeEnv:
    """Create (once per worker process) the env; stopped when the pytest session ends."""
    global _ENV
    if _ENV is not None:
        return _ENV
    if not opencode_available():
        pytest.skip("opencode is not installed: run the README setup command (npm ci installs opencode-ai 1.18.33)")
    llm = MiniLLM().start()
    server = OpencodeProc(tmp_path_factory.mktemp("oc-recovery"), llm.base_url)
    try:
        server.start()
    except BaseException:
        llm.stop()
        raise
    control = toxiproxy.create_proxy("oc-control", f"127.0.0.1:{server.port}")
    events = toxiproxy.create_proxy("oc-events", f"127.0.0.1:{server.port}")
    env = OpencodeEnv(llm, server, control, events)
    orig_restart = server.restart

    def restart() -> None:
        orig_restart()
        env.retarget()

    server.restart = restart  # type: ignore[method-assign]

    def stop() -> None:
        global _ENV
        _ENV = None
        llm.stop()
        server.stop()
        for proxy in (control, events):
            proxy.close()

    request.session.config.add_cleanup(stop)
    # warm-up: the first turn of a fresh instance bootstraps it (slow); tests then see steady state
    with env.runner(stall_timeout=30) as runner:
        runner.run_turn("warm up")
    llm.reset()
    _ENV = env
    return env
