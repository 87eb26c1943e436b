"""Helpers for the stream tests (unique module name: other test dirs have their own conftest)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from stream_netfault import FaultProxy


def client_for(proc: Any, proxy: FaultProxy | None = None, **kw: Any) -> aioredis.Redis:
    host, port = (proxy.listen_host, proxy.listen_port) if proxy else (proc.host, proc.port)
    kw.setdefault("socket_timeout", 2.0)
    kw.setdefault("socket_connect_timeout", 1.0)
    return aioredis.Redis(host=host, port=port, password=proc.password, **kw)


def run_bounded(coro: Any, timeout: float) -> Any:
    """Run in a fresh loop; on timeout fail with every task's stack (what was stuck)."""
    async def bounded() -> Any:
        task = asyncio.get_running_loop().create_task(coro)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            return task.result()
        stacks = []
        for t in asyncio.all_tasks():
            if t is not asyncio.current_task():
                frames = t.get_stack(limit=8)
                stacks.append(f"{t.get_name()}: " + " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in frames))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise AssertionError(f"did not finish within {timeout}s; tasks:\n" + "\n".join(stacks))
    return asyncio.run(bounded())
