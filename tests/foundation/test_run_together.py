"""``testing.threads.run_together``: the shared "N callables on threads at once" runner of the race checks.
Each test forces its case with events (no sleeps), so a runner that lost a property fails on every run."""

from __future__ import annotations

import threading

import pytest

from pytest_cbchaos.testing.threads import ThreadsStuck, run_together


def test_callables_overlap_and_results_keep_their_order() -> None:
    """Each callable waits for the other to have started: a runner that ran them one after another would
    leave the first waiting (10 s bound, then an assertion error), so passing means they overlapped."""
    started = [threading.Event(), threading.Event()]

    def fn(i: int) -> int:
        started[i].set()
        assert started[1 - i].wait(10), "the callables did not run at the same time"
        return i * 10

    assert run_together([lambda: fn(0), lambda: fn(1)], 30) == [0, 10]


def test_an_error_is_raised_here_after_on_error_ran_in_its_thread() -> None:
    left: list[str] = []

    def boom() -> None:
        raise ValueError("worker failed")

    with pytest.raises(ValueError, match="worker failed"):
        run_together([boom, lambda: None], 30, on_error=lambda: left.append(threading.current_thread().name))
    assert len(left) == 1 and left[0] != threading.current_thread().name


def test_a_thread_still_running_at_the_bound_fails_the_run() -> None:
    """The held callable cannot return before ``release`` is set, which happens only after the runner has
    given up: a runner that returned a shorter result list instead of raising is caught every run."""
    release = threading.Event()
    try:
        with pytest.raises(ThreadsStuck, match="1 of 2 threads still running after 0.2s"):
            run_together([lambda: release.wait(30), lambda: 1], 0.2)
    finally:
        release.set()
