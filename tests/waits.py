"""Waiting for a fault-free step instead of timing it once: a busy runner can delay any single round trip past a
short bound, while a fault that adds the bound to every round trip keeps each one above it."""

from __future__ import annotations

import time
from typing import Callable

FAST_WITHIN_S = 10.0  # bound of the wait for one fault-free round trip under a short bound


def fastest_under(measure: Callable[[], float], under_s: float, within_s: float = FAST_WITHIN_S) -> float:
    """A duration ``measure()`` returned below ``under_s``, measured again while above (for up to ``within_s``).
    A fault that adds at least ``under_s`` to every round trip keeps each one above it, so that stays caught: the
    wait ends with a duration above ``under_s`` for the caller's assertion to report."""
    deadline = time.monotonic() + within_s
    while True:
        took = measure()
        if took < under_s or time.monotonic() > deadline:
            return took
