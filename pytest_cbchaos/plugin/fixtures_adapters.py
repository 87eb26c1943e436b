"""Fixtures for third-party breaker adapters and weakness probes (docs/fault-kit-design.md#adapters).

Register with ``-p pytest_cbchaos.plugin.fixtures_adapters`` (the plugin registers it by default).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, Iterator

import pytest

if TYPE_CHECKING:
    from pytest_cbchaos.adapters import AdapterConfig, BreakerAdapter

# the names of ``pytest_cbchaos.adapters.ALL_ADAPTERS``, spelled out so that registering the fixture does not
# import every breaker library (tests/foundation/test_plugin_cost.py checks they agree)
ADAPTER_NAMES = ("pybreaker", "aiobreaker", "aiobreaker_redis", "circuitbreaker", "purgatory", "purgatory_sync", "cbchaos",
                 "cbchaos_async")


def proxy_redis_url(proxy: Any) -> str:
    """``redis://host:port/0`` of the fault proxy in front of Redis (password passed separately)."""
    return f"redis://{proxy.listen_host}:{proxy.listen_port}/0"


def unique_breaker_name(prefix: str = "cb") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class AdapterFactory:
    """Builds more instances ("workers") of one adapter on the same proxy and breaker name."""

    def __init__(self, cls: type[BreakerAdapter], redis_url: str, password: str | None, breaker_name: str) -> None:
        self.cls, self.redis_url, self.password, self.breaker_name = cls, redis_url, password, breaker_name
        self._built: list[BreakerAdapter] = []

    def __call__(self, config: AdapterConfig | None = None, breaker_name: str | None = None) -> BreakerAdapter:
        a = self.cls().build(self.redis_url, self.password, breaker_name or self.breaker_name, config)
        self._built.append(a)
        return a

    def close(self) -> None:
        for a in self._built:
            a.close()
        self._built.clear()


@pytest.fixture(params=ADAPTER_NAMES)
def cbchaos_breaker_adapter(request: pytest.FixtureRequest, cbchaos_redis_proxy: Any,
                            cbchaos_redis_proc: Any) -> Iterator[BreakerAdapter]:
    """A built adapter per available library, on the Redis fault proxy, with a unique breaker name.

    ``adapter.factory(config)`` builds further instances of the same breaker (more "workers").
    """
    from pytest_cbchaos.adapters import ALL_ADAPTERS, unavailable_adapters

    skip = unavailable_adapters()
    if request.param in skip:
        pytest.skip(skip[request.param])
    cls = next(c for c in ALL_ADAPTERS if c.name == request.param)
    factory = AdapterFactory(cls, proxy_redis_url(cbchaos_redis_proxy), cbchaos_redis_proc.password,
                             unique_breaker_name(cls.name))
    adapter = factory()
    adapter.factory = factory  # type: ignore[attr-defined]
    try:
        yield adapter
    finally:
        factory.close()


class ProbeCollector:
    """Runs probes and records each result into ``request.node.user_properties``."""

    def __init__(self, node: pytest.Item) -> None:
        self.node = node
        self.results: list[Any] = []

    def record(self, result: Any) -> Any:
        self.results.append(result)
        self.node.user_properties.append(("cbchaos_probe", json.dumps(result.to_dict(), sort_keys=True)))
        return result

    def run(self, probe_id: str, ctx: Any, adapter_cls: type[BreakerAdapter], **kw: Any) -> Any:
        from pytest_cbchaos.adapters.probes import run_probe

        return self.record(run_probe(probe_id, ctx, adapter_cls, **kw))


@pytest.fixture
def cbchaos_weakness_probes(request: pytest.FixtureRequest) -> ProbeCollector:
    """Probe results of this test go to user_properties as ("cbchaos_probe", json) for the terminal summary."""
    return ProbeCollector(request.node)


@pytest.fixture
def cbchaos_probe_context(cbchaos_redis_proxy: Any, cbchaos_redis_proc: Any, cbchaos_redis_admin: Any,
                          cbchaos_faults: Any) -> Any:
    """Everything a probe needs: the proxy address and password, a direct admin client, the faults."""
    from pytest_cbchaos.adapters.probes import ProbeContext

    return ProbeContext(redis_url=proxy_redis_url(cbchaos_redis_proxy), password=cbchaos_redis_proc.password,
                        admin=cbchaos_redis_admin, proxy=cbchaos_redis_proxy, faults=cbchaos_faults)
