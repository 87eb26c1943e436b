"""Reaper.stop() ends the reaper even when a store call swallows the cancellation.

redis.asyncio can turn a cancellation that races a socket timeout into an ordinary error; the
reaper's loop treats errors as "store down, try again", so a plain cancel-and-gather could wait for
ever (seen as a hung teardown in the full suite)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from pytest_cbchaos.stream.reaper import Reaper
from tests.stream.inv_kit import wait_until


class SwallowingReaper(Reaper):
    """Every round's store call converts a cancellation into an ordinary error."""

    def __init__(self) -> None:
        super().__init__(SimpleNamespace(config=SimpleNamespace(reaper_interval_s=0.01)))  # type: ignore[arg-type]
        self.rounds = 0
        self.swallow_left = 3  # bounded, so even a broken stop() cannot hang the test run
        self.in_call = asyncio.Event()

    async def scan_missing(self) -> int:
        return 0

    async def reap_once(self) -> int:  # type: ignore[override]
        self.rounds += 1
        self.in_call.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if self.swallow_left <= 0:
                raise
            self.swallow_left -= 1
            raise ConnectionError("cancelled read surfaced as a connection error") from None
        return 0


async def _stop_bounded(r: Reaper, task: asyncio.Task) -> bool:
    """``r.stop()`` with a bound; on failure the task is ended by force so the loop can close."""
    stopper = asyncio.create_task(r.stop())
    done, _ = await asyncio.wait({stopper}, timeout=10)
    if not done:
        r.swallow_left = 0  # type: ignore[attr-defined]
        for _ in range(5):
            task.cancel()
            await asyncio.wait({task}, timeout=0.2)
        await asyncio.wait({stopper}, timeout=5)
    return bool(done)


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_stop_ends_a_reaper_whose_store_call_swallows_the_cancel() -> None:
    async def main() -> None:
        r = SwallowingReaper()
        task = r.start()
        await asyncio.wait_for(r.in_call.wait(), 5)
        done = await _stop_bounded(r, task)
        assert done, "Reaper.stop() did not end a reaper whose store call swallowed the cancel"
        assert task.done() and r._task is None

    _run(main())


def test_plain_cancel_and_gather_would_not_end_it() -> None:
    """The check can fail: the pre-fix stop (one cancel, then gather) leaves the task running."""
    async def main() -> None:
        r = SwallowingReaper()
        task = r.start()
        await asyncio.wait_for(r.in_call.wait(), 5)
        task.cancel()
        # the next round is waited for (bounded), not given 0.5 s: it is the event that shows the cancel swallowed
        await wait_until(lambda: task.done() or r.rounds >= 2, 10, "the reaper's next round or its end")
        assert not task.done() and r.rounds >= 2  # cancel swallowed; the loop went on
        r.swallow_left = 10  # stop() must cope with several swallowed cancels
        assert await _stop_bounded(r, task), "Reaper.stop() did not end the reaper"
        assert task.done()

    _run(main())
