"""Targets for the verdict-audit tests: the sample counter with a real proxy, a 'url'-like Redis, and
a workload that observes nothing (copied next to sample_targets.py in a pytester project)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sample_targets import CounterTarget  # type: ignore[import-not-found]

from pytest_cbchaos.scenario.targets import Observations


@dataclass
class _Endpoint:
    host: str
    port: int
    password: Any


class ProxiedCounter(CounterTarget):
    """Workers INCR through the embedded fault proxy, so proxy faults act on the real path."""

    default_proxies = ("redis",)

    def setup(self, ctx):
        super().setup(ctx)
        server = ctx.state["server"]
        proxy = ctx.env.proxy("redis", f"{server.host}:{server.port}")
        ctx.proxies["redis"] = proxy
        ctx.state["server"] = _Endpoint(proxy.listen_host, proxy.listen_port, server.password)


class _UrlServer:
    """What the 'url' Redis backend hands out: an address, no process to signal."""

    name = "redis"
    process = None

    def __init__(self, server: Any) -> None:
        self.host, self.port, self.password = server.host, server.port, server.password


class UrlRedisCounter(CounterTarget):
    def setup(self, ctx):
        super().setup(ctx)
        ctx.processes["redis"] = _UrlServer(ctx.state["server"])


class IdleCounter(CounterTarget):
    """A workload that ends before its first operation: its checks have nothing to check."""

    def run(self, ctx) -> Observations:
        obs = Observations()
        obs.metrics.update(ok=0, info=0, final=0)
        return obs


class ArtifactsBlocked(CounterTarget):
    """Puts a file where the scenario's artifact directory goes, so writing the artifacts fails."""

    def teardown(self, ctx):
        super().teardown(ctx)
        if ctx.artifacts is not None:
            ctx.artifacts.parent.mkdir(parents=True, exist_ok=True)
            ctx.artifacts.write_text("not a directory")
