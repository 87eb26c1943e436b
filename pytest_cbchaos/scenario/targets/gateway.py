"""Target ``gateway``: consumers read the durable stream over HTTP (durable-stream.md §3) through the
``stream-http`` fault proxy. Uses the stream target's workload and checker; needs the HTTP app
(``pytest_cbchaos.gateway``), otherwise the scenario is skipped with that reason.
"""

from __future__ import annotations

from typing import Any

from pytest_cbchaos.scenario.targets import Observations, TargetUnavailable
from pytest_cbchaos.scenario.targets.stream import StreamTarget


class GatewayTarget(StreamTarget):
    name = "gateway"
    description = "HTTP/SSE consumer gateway over the durable stream"
    requires = (*StreamTarget.requires, "pytest_cbchaos.gateway")
    default_proxies = ("redis-producer", "redis-consumer", "stream-http")

    def setup(self, ctx: Any) -> None:
        super().setup(ctx)
        import pytest_cbchaos.gateway as gw  # type: ignore[import-not-found]

        start = getattr(gw, "start_gateway", None)
        if start is None:
            raise TargetUnavailable("pytest_cbchaos.gateway has no start_gateway() yet")
        server = ctx.state["server"]
        app = start(redis_url=server.url, workdir=ctx.env.workdir / "gateway")
        ctx.state["gateway"] = app
        ctx.processes["gateway"] = app
        ctx.proxies["stream-http"] = ctx.env.proxy("stream-http", f"127.0.0.1:{app.port}")

    def processes(self, topology: Any) -> list[str]:
        return [*super().processes(topology), "gateway"]

    def teardown(self, ctx: Any) -> None:
        app = ctx.state.get("gateway")
        if app is not None:
            app.stop()
        super().teardown(ctx)

    def run(self, ctx: Any) -> Observations:
        return super().run(ctx)
