"""Stream test harness: real Redis (the kit's `cbchaos_redis_proc`) behind two fault proxies,
`redis-producer` and `redis-consumer`, so a fault hits one side only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream_helpers import run_bounded  # noqa: E402
from stream_netfault import FaultProxy  # noqa: E402


@pytest.fixture
def stream_proxies(cbchaos_redis_proc: Any) -> Iterator[dict[str, FaultProxy]]:
    up = (cbchaos_redis_proc.host, cbchaos_redis_proc.port)
    proxies = {"producer": FaultProxy(up, "redis-producer"), "consumer": FaultProxy(up, "redis-consumer")}
    yield proxies
    for p in proxies.values():
        p.close()


@pytest.fixture
def run() -> Any:
    """Run a coroutine to completion in a fresh loop, with a hard bound."""

    def _run(coro: Any, timeout: float = 30.0) -> Any:
        return run_bounded(coro, timeout)

    return _run
