"""Waiting on a condition with a deadline: the kit's one polling loop (never a bare sleep as sync)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

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
