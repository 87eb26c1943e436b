"""Waiting on a condition with a deadline: the kit's one polling loop (never a bare sleep as sync)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not hold in time; an ``AssertionError`` so a test fails rather than errors."""


def wait_until(cond: Callable[[], T], timeout: float, what: str = "condition", *, interval: float = 0.02,
               first_interval: float | None = None) -> T:
    """Poll ``cond()`` until it returns a truthy value and return that value.

    Bounded in time: after ``timeout`` seconds raise :class:`WaitTimeout` naming ``what``. The poll
    interval starts at ``first_interval`` (default ``interval``) and doubles up to ``interval``.
    """
    deadline = time.monotonic() + timeout
    delay = interval if first_interval is None else first_interval
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(delay)  # polling interval of a condition wait with a deadline
        delay = min(delay * 2, interval)


def await_chain(coro: Any) -> str:
    """``name:line`` of every frame of a suspended coroutine chain (a task's own stack shows only
    the outermost frame, which rarely says where it is stuck)."""
    out = []
    for _ in range(50):  # bounded: chains are short, a cycle must not loop for ever
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        out.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return " -> ".join(out) + (f" -> {coro!r}"[:200] if coro is not None else "")


async def bounded(coro: Awaitable[T], timeout: float, *, what: str = "run",
                  error: type[Exception] = WaitTimeout) -> T:
    """Await ``coro`` for at most ``timeout`` seconds; on timeout raise ``error`` listing every
    task's await chain. The cancel that follows is bounded too: a read that swallows its
    cancellation must not hang the report."""
    task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if task in done:
        return task.result()
    chains = [f"{t.get_name()}: {await_chain(t.get_coro())}" for t in asyncio.all_tasks()
              if t is not asyncio.current_task()]
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    raise error(f"{what} did not finish within {timeout}s; tasks:\n" + "\n".join(chains))


def run_bounded(coro: Awaitable[T], timeout: float, *, what: str = "run") -> T:
    """:func:`bounded` in a fresh event loop."""
    return asyncio.run(bounded(coro, timeout, what=what))
