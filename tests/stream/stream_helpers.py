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


def _chain(coro: Any) -> str:
    """`file:line` of every frame of a suspended coroutine chain (task stacks show only the outer one)."""
    out = []
    for _ in range(50):
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        out.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return " -> ".join(out) + (f" -> {coro!r}"[:200] if coro is not None else "")


def run_bounded(coro: Any, timeout: float) -> Any:
    """Run in a fresh loop; on timeout fail with every task's whole await chain (where it is stuck)."""
    async def bounded() -> Any:
        task = asyncio.get_running_loop().create_task(coro)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            return task.result()
        stacks = [f"{t.get_name()}: {_chain(t.get_coro())}" for t in asyncio.all_tasks()
                  if t is not asyncio.current_task()]
        task.cancel()
        await asyncio.wait({task}, timeout=5)  # bounded: a swallowed cancel must not hang the report
        raise AssertionError(f"did not finish within {timeout}s; tasks:\n" + "\n".join(stacks))
    return asyncio.run(bounded())
