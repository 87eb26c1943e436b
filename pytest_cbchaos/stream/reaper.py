"""The reaper: ends messages whose producer is gone with ``cancelled{producer_lost}``
(docs/stream-design.md#leases-fencing-and-the-reaper).

The `active` score only selects candidates; the `reap` script's lease check decides, so several
reapers racing (one per relay process) are safe.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from pytest_cbchaos.stream.envelope import encode_payload
from pytest_cbchaos.stream.store import StreamStore, _s


class Reaper:
    def __init__(self, store: StreamStore, *, interval_s: float | None = None,
                 rotate_epoch_best_effort: bool = False) -> None:
        self.store = store
        self.interval_s = interval_s or store.config.reaper_interval_s
        self.rotate = rotate_epoch_best_effort
        self.reaped: list[tuple[str, int]] = []
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def scan_missing(self) -> int:
        """Once at start: in-progress conversations missing from `active` (an indeterminate ZADD)."""
        added = 0
        async for key in self.store.redis.scan_iter(match=f"{self.store.prefix}{{*}}:meta", count=500):
            k = _s(key)
            conv = k[len(self.store.prefix) + 1:k.rindex("}")]
            meta = await self.store.meta(conv)
            cur = meta and meta.get("current_message_id")
            if not cur:
                continue
            rec = await self.store.record(conv, cur)
            if rec and rec["status"] == "in_progress" and await self.store.redis.zscore(self.store.active_key, conv) is None:
                await self.store.redis.zadd(self.store.active_key, {conv: 0})
                added += 1
        return added

    async def reap_once(self) -> int:
        n = 0
        for conv in await self.store.active_due():
            n += await self.reap_conversation(conv)
        return n

    async def reap_conversation(self, conv: str) -> int:
        new_epoch = ""
        if self.rotate:
            meta = await self.store.meta(conv)
            if meta and meta.get("durability") == "best_effort":
                new_epoch = secrets.token_hex(8)
        reply = await self.store.reap(conv, None, f"reaper:{secrets.token_hex(8)}",
                                      encode_payload("cancelled", {"reason": "producer_lost"}), new_epoch=new_epoch)
        if reply.status == "OK":
            self.reaped.append((conv, reply.last_seq))
        if reply.status in ("OK", "ALREADY_TERMINAL", "NONE", "NO_STREAM"):
            await self.store.active_remove(conv)
        return 1 if reply.status == "OK" else 0

    async def run(self) -> None:
        try:
            await self.scan_missing()
        except Exception:
            pass
        rounds = 0
        while not self._stopping:  # a flag as well as cancel: a redis-py read can swallow a cancellation
            rounds += 1
            try:
                if rounds % 20 == 0:
                    await self.scan_missing()  # conversations whose ZADD was lost (B0)
                await self.reap_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                pass  # store down: try again next interval
            await asyncio.sleep(self.interval_s)

    def start(self) -> asyncio.Task:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self.run(), name="stream-reaper")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            for _ in range(50):  # bounded: re-cancel until the task ends (one cancel may be swallowed)
                self._task.cancel()
                done, _ = await asyncio.wait({self._task}, timeout=0.2)
                if done:
                    break
            if self._task.done() and not self._task.cancelled():
                self._task.exception()  # retrieved: an error of the cut-short round is not news
            self._task = None

    async def __aenter__(self) -> "Reaper":
        self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
