"""Shared checks of a lost suffix (docs/stream-design.md#restart-and-lost-suffix): the relay's rebase calls, the
live consumer's loss notice, and one payload per ``(epoch, seq)``; used by the restart and the failover tests."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

LOSS_NOTICES = {"epoch_changed", "cursor_ahead"}


@dataclass
class LiveTurn:
    """A started turn and its live consumer (a task recording into ``delivery`` and ``notices``)."""

    hd: Any
    loop: Any
    delivery: Any
    notices: list[str]
    consumer: asyncio.Task


async def start_live_turn(relay: Any, cstore: Any, stream: str, src: Any) -> LiveTurn:
    """``relay.start`` then a ``ReadLoop`` consumer from the turn's first seq, consuming in a task."""
    from pytest_cbchaos.stream.checker import Delivery
    from pytest_cbchaos.stream.reader import ReadLoop
    from tests.stream.test_inv_redis import _consume

    hd = await relay.start(stream, src, model_id="m")
    loop = ReadLoop(cstore, stream, after_seq=hd.after_seq, message_id=hd.message_id)
    await loop.connect()
    d, notices = Delivery(hd.after_seq, name="live", target=hd.message_id), []
    return LiveTurn(hd, loop, d, notices, asyncio.create_task(_consume(loop, d, notices)))


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


def rollback_terminal_violations(replay: list[Any], lost_from: int, lost_to: int) -> list[str]:
    """The message's replay ends with its one terminal: ``error{code: store.rollback, lost_from, lost_to}``."""
    terms = [e for e in replay if e.is_terminal]
    if len(terms) != 1 or not replay[-1].is_terminal or replay[-1].kind != "error":
        return [f"the message's replay ends {[e.kind for e in replay[-3:]]} with {len(terms)} terminal(s)"]
    p = json.loads(replay[-1].payload_bytes)
    want = {"code": "store.rollback", "lost_from": lost_from, "lost_to": lost_to}
    return [] if {k: p.get(k) for k in want} == want else [f"terminal payload {p} does not carry {want}"]
