"""A consumer's read loop honours a cancel even when a Redis read turns it into an error.

On Python 3.11 a read timeout racing a cancel can surface as a timeout or connection error with
the cancel still pending (``Task.cancelling()``). Treated as an outage, the loop reconnected and
went on reading: a clean-clone CI run hung 90 s on a cancelled consumer that never ended.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
import redis.exceptions as rexc

from pytest_cbchaos.stream import StreamConfig, StreamStore
from pytest_cbchaos.stream.reader import Notice, ReadLoop
from pytest_cbchaos.waiting import run_bounded


class _SwallowingRead(ReadLoop):
    """Every read blocks; a cancel during it comes back as a redis TimeoutError (the race above)."""

    reading: asyncio.Event

    async def _wakeup_checks(self) -> Notice | None:
        return None

    async def _read(self) -> list:
        self.reading.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise rexc.TimeoutError("Timeout reading from 127.0.0.1:6379")
        return []


async def _cancel_during_read() -> tuple[bool, list[str]]:
    client = aioredis.Redis(host="127.0.0.1", port=1)  # never connected: the reads are simulated
    loop = _SwallowingRead(StreamStore(client, StreamConfig.ci()), "c1")
    loop.reading = asyncio.Event()
    notices: list[str] = []

    async def consume() -> None:
        async for item in loop.items():
            if isinstance(item, Notice):
                notices.append(item.code)

    task = asyncio.get_running_loop().create_task(consume())
    await asyncio.wait_for(loop.reading.wait(), 5)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    if task not in done:
        await loop.aclose()
        await asyncio.wait({task}, timeout=5)
    await client.aclose()
    return task in done and task.cancelled(), notices


def test_cancel_that_a_read_turned_into_an_error_ends_the_loop() -> None:
    cancelled, notices = run_bounded(_cancel_during_read(), 30)
    assert cancelled, f"the loop went on after its cancel (notices {notices})"
    assert notices == [], notices  # no store_unavailable for a cancel
