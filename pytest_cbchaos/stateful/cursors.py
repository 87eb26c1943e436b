"""Where a new consumer of the stream machines starts: one message and a cursor in it."""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple


class ConsumerStart(NamedTuple):
    message_id: str
    record: dict[str, Any]
    cursor: int
    past_terminal: bool  # at or after a finished target's terminal: the answer is 204, nothing to deliver


def pick_start(meta: Mapping[str, Any] | None, records: Mapping[str, dict[str, Any]], pick: int, frac: float,
               past: bool) -> ConsumerStart | None:
    """Message ``pick`` (older or current, by ``first_seq``) and a cursor in ``[floor_seq, end]``:
    below its terminal, or (``past``, finished targets only) at or after it. ``None`` when the
    conversation has no message yet."""
    msgs = sorted(records.items(), key=lambda kv: kv[1]["first_seq"])
    if meta is None or not msgs:
        return None
    mid, rec = msgs[pick % len(msgs)]
    floor = meta["floor_seq"]
    finished = rec["status"] != "in_progress"
    if past and finished:
        cursor = rec["terminal_seq"] + int(frac * (meta["last_seq"] - rec["terminal_seq"]))
    else:
        hi = rec["terminal_seq"] - 1 if finished else rec["last_seq"]
        cursor = max(floor, min(hi, floor + int(frac * (hi - floor + 1))))
    return ConsumerStart(mid, rec, cursor, finished and cursor >= rec["terminal_seq"])
