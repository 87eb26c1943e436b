"""Stream test harness: real Redis (the kit's `cbchaos_redis_proc`) behind two fault proxies,
`redis-producer` and `redis-consumer`, so a fault hits one side only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.stream.stream_helpers import ProxyFaults, run_bounded


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After the test's fixtures: every connection the M30 mutant opened has been closed by the test that
    used it (``close_leaked``). Left registered, they stay open as long as the worker lives, and once
    dropped each is an "Unclosed client session" in whichever test the garbage collector runs. Free:
    a registry length, read only where the mutants module is loaded (no ``gc.collect``, 60-70 ms each)."""
    mutants = sys.modules.get("pytest_cbchaos.testing.stream_mutants")
    if mutants is None or not mutants._LEAKED:
        return
    left = len(mutants._LEAKED)
    mutants._LEAKED.clear()  # reported here once, not again in every later test of the worker
    pytest.fail(f"{item.nodeid}: {left} M30 connection(s) not closed: run stream_mutants.close_leaked() in "
                f"their loop once no M30 loop reads (HttpKit(after_app=...))", pytrace=False)


@pytest.fixture
def stream_proxies(cbchaos_redis_proc: Any, cbchaos_toxiproxy: Any) -> Iterator[dict[str, ProxyFaults]]:
    """``producer`` and ``consumer``: two proxies of the kit's fault proxy in front of the same Redis."""
    up = f"{cbchaos_redis_proc.host}:{cbchaos_redis_proc.port}"
    proxies = {side: ProxyFaults(cbchaos_toxiproxy.create_proxy(f"redis-{side}", up))
               for side in ("producer", "consumer")}
    yield proxies
    for p in proxies.values():
        p.close()


@pytest.fixture
def run() -> Any:
    """Run a coroutine to completion in a fresh loop, with a hard bound."""

    def _run(coro: Any, timeout: float = 30.0) -> Any:
        return run_bounded(coro, timeout)

    return _run


@pytest.fixture
def run_in_kit(cbchaos_redis_proc: Any, cbchaos_redis_proxy: Any, cbchaos_toxiproxy: Any) -> Any:
    """``run_in_kit(scenario, config, *args, timeout=60, kit={...HttpKit options}, **kw)``: run
    ``await scenario(kit, *args, **kw)`` inside a fresh :class:`inv_kit.HttpKit`; returns its result."""
    from tests.stream.inv_kit import HttpKit

    def _run(scenario: Any, config: Any, *args: Any, timeout: float = 60.0, kit: dict | None = None,
             **kw: Any) -> Any:
        async def main() -> Any:
            async with HttpKit(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_toxiproxy, config,
                               **(kit or {})) as k:
                return await scenario(k, *args, **kw)
        return run_bounded(main(), timeout)

    return _run


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    """``start(**start_redis options)``: a private redis-server (binary) for this test, stopped at teardown."""
    from pytest_cbchaos.servers.redis import start_redis

    started: list[Any] = []

    def start(**kw: Any) -> Any:
        server = start_redis("binary", workdir=tmp_path / f"redis{len(started)}", **kw)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()
