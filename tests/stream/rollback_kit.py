"""Shared checks of a lost suffix (docs/stream-design.md#restart-and-lost-suffix): the relay's rebase calls, the
live consumer's loss notice, and one payload per ``(epoch, seq)``; used by the restart and the failover tests."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Iterable

LOSS_NOTICES = {"epoch_changed", "cursor_ahead"}


def count_rebases(store: Any) -> list[str]:
    """Wrap ``store.rebase``; the returned list receives each call's status."""
    statuses: list[str] = []
    orig = store.rebase

    async def counted(*a: Any, **kw: Any) -> Any:
        reply = await orig(*a, **kw)
        statuses.append(reply.status)
        return reply

    store.rebase = counted
    return statuses


async def consumer_loss_violations(consumer: asyncio.Task, loop: Any, notices: list[str], cfg: Any) -> list[str]:
    """The live consumer ends with ``epoch_changed`` or ``cursor_ahead``, never waits silently."""
    bad: list[str] = []
    done, _ = await asyncio.wait({consumer}, timeout=cfg.heartbeat_s * 4 + 10)
    if consumer not in done:
        consumer.cancel()
        bad.append(f"the live consumer (cursor {loop.cursor}) waits silently past the lost suffix")
    elif not LOSS_NOTICES & set(notices):
        bad.append(f"the live consumer ended without epoch_changed/cursor_ahead: {notices}")
    await asyncio.gather(consumer, return_exceptions=True)
    return bad


def payload_conflicts(envelopes: Iterable[Any]) -> list[str]:
    """Every ``(epoch, seq)`` seen maps to one payload."""
    bad: list[str] = []
    seen: dict[tuple[str, int], str] = {}
    for e in envelopes:
        digest = hashlib.sha256(e.payload_bytes).hexdigest()
        if seen.setdefault((e.epoch, e.seq), digest) != digest:
            bad.append(f"two payloads for (epoch {e.epoch}, seq {e.seq})")
    return bad
