"""Run callables on threads that start together, for the checks that need a real race (conformance CB-3,
lost updates, admission, the adapter probes).

One idea, written once: every thread waits at a barrier so the calls overlap; every join is bounded; and the
run fails if a thread is still alive or raised. A thread that is stuck or died must fail the check rather than
leave it judging a shorter result list, which would be a false verdict."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


class ThreadsStuck(RuntimeError):
    """A thread of :func:`run_together` was still running when its bound ran out."""


def run_together(fns: Sequence[Callable[[], Any]], timeout: float, *, start_timeout: float = 10.0,
                 on_error: Callable[[], None] | None = None) -> list[Any]:
    """Each callable on its own (daemon) thread, all released by one barrier; their results in order.

    ``start_timeout`` bounds the wait at the barrier; ``timeout`` bounds the whole run, counted from the
    start. ``on_error`` runs in a thread whose callable raised, before it exits (a rendezvous the others
    wait at must stop counting it). The first exception is re-raised here; a thread still alive at the
    bound raises :class:`ThreadsStuck` (daemon threads, so a stuck one cannot hold the interpreter)."""
    results: list[Any] = [None] * len(fns)
    errors: list[BaseException] = []
    start = threading.Barrier(len(fns))

    def runner(i: int, fn: Callable[[], Any]) -> None:
        try:
            start.wait(start_timeout)
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller below
            errors.append(exc)
            if on_error is not None:
                on_error()

    threads = [threading.Thread(target=runner, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    deadline = time.monotonic() + timeout
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if errors:
        raise errors[0]
    stuck = sum(t.is_alive() for t in threads)
    if stuck:
        raise ThreadsStuck(f"{stuck} of {len(threads)} threads still running after {timeout}s")
    return results
