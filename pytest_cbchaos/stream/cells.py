"""Outcome cells of the stream's scripts (docs/stream-design.md#script-outcome-cells).

A cell is one answer a script gives for one call shape, on a first send or on the resend after a
lost reply. :func:`walk` drives every cell of :data:`CELLS` against a store on a scripted clock and
reports what each answered, so a suite can fail on a cell no test reaches.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Awaitable, Callable

from pytest_cbchaos.faults.clock import ManualClock
from pytest_cbchaos.stream.envelope import encode_payload, kind_class
from pytest_cbchaos.stream.store import AppendCall, StreamStore

_TS = 1
_PAYLOADS = {
    "text_delta": {"part_id": "p", "text": "x"},
    "recovery": {"attempt": 1, "cause": "stall"},
    "complete": {"finish_reason": "stop", "usage": {}},
}
SHAPES: dict[str, tuple[str, ...]] = {
    "terminal": ("complete",),  # a lone terminal: the turn's last call after a flush
    "control": ("recovery",),  # a lone control event
    "content": ("text_delta",),  # the first content event, alone
    "batch": ("text_delta", "text_delta", "complete"),
}


@dataclass(frozen=True)
class Cell:
    script: str
    outcome: str
    shape: str = "-"
    lost: bool = False  # the answer to the identical resend after the first send applied and its reply was lost
    how: str = ""

    @property
    def name(self) -> str:
        return f"{self.script}/{self.outcome}/{self.shape}" + ("/lost" if self.lost else "")


def _append_cells() -> list[Cell]:
    out = []
    for shape in SHAPES:
        out += [Cell("append", "OK", shape, how="first send"),
                Cell("append", "DUP", shape, True, "identical resend of an applied call"),
                Cell("append", "CONFLICT", shape, how="prev_seq behind meta.last_seq"),
                Cell("append", "FENCED", shape, how="lease expired"),
                Cell("append", "CLOSED", shape, how="record closed under a held lease (forced: no script does it)")]
    return out + [Cell("append", "NO_STREAM", "content", how="conversation gone"),
                  Cell("append", "EPOCH", "content", how="epoch rotated"),
                  Cell("append", "ROLLBACK", "content", how="meta.last_seq behind prev_seq"),
                  Cell("append", "IDEM_MISMATCH", "content", how="a resend that differs from the applied call"),
                  Cell("append", "BAD_BATCH", "batch", how="terminal not last")]


CELLS: tuple[Cell, ...] = tuple(_append_cells() + [
    Cell("open_turn", "OK", how="fresh conversation"),
    Cell("open_turn", "OK", "supersede", how="previous turn in progress, lease expired: it is cancelled"),
    Cell("open_turn", "DUP", lost=True, how="identical resend"),
    Cell("open_turn", "BUSY", how="another turn holds the lease"),
    Cell("renew", "OK", how="lease held"),
    Cell("renew", "OK", lost=True, how="identical resend"),
    Cell("renew", "FENCED", how="lease expired"),
    Cell("reap", "OK", how="lease expired, turn in progress"),
    Cell("reap", "ALREADY_TERMINAL", lost=True, how="identical resend"),
    Cell("reap", "LEASED", how="lease held"),
    Cell("reap", "NONE", how="unknown message"),
    Cell("reap", "NO_STREAM", how="conversation gone"),
    Cell("trim", "OK", "count", how="keep_last=1 of two finished turns"),
    Cell("trim", "OK", "age", how="turn ended before the cutoff"),
    Cell("trim", "NOOP", "age", how="long turn created before the cutoff, ended after it"),
    Cell("trim", "NOOP", "count", lost=True, how="identical resend"),
    Cell("trim", "REFUSED", "count", how="keep_last=0 with a turn in progress"),
    Cell("rebase", "OK", how="after ROLLBACK, record survived"),
    Cell("rebase", "EPOCH", lost=True, how="identical resend (detail = new epoch)"),
    Cell("rebase", "CONFLICT", how="meta.last_seq moved"),
    Cell("rebase", "FENCED", how="another writer holds the lease"),
    Cell("rebase", "ALREADY_TERMINAL", how="turn already ended"),
    Cell("rebase", "NO_RECORD", how="record lost"),
    Cell("rebase", "NO_STREAM", how="conversation gone"),
])


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    observed: str

    @property
    def reached(self) -> bool:
        return self.observed == self.cell.outcome


class _Turn:
    def __init__(self, conv: str, mid: str, sid: str, epoch: str, last: int) -> None:
        self.conv, self.mid, self.sid, self.epoch, self.last, self.step = conv, mid, sid, epoch, last, 1

    def call(self, kinds: tuple[str, ...], *, prev: int | None = None, step: int | None = None,
             epoch: str | None = None) -> AppendCall:
        events = tuple((k, kind_class(k), _TS, encode_payload(k, _PAYLOADS[k])) for k in kinds)
        return AppendCall(self.conv, self.mid, self.sid, self.step + 1 if step is None else step,
                          self.last if prev is None else prev, self.epoch if epoch is None else epoch, events)


class _Walk:
    def __init__(self, store: StreamStore, clock: ManualClock) -> None:
        self.store, self.clock, self.n = store, clock, 0

    def conv(self) -> str:
        self.n += 1
        return f"cell{self.n}"

    async def open(self, conv: str | None = None, mid: str | None = None) -> _Turn:
        conv = conv or self.conv()
        mid = mid or f"m{secrets.token_hex(3)}"
        sid = f"s:{secrets.token_hex(4)}"
        r = await self.store.open_turn(conv, mid, sid, ts_ms=_TS, superseded_payload=_sup(),
                                       payload=encode_payload("turn_started", {"model_id": "m", "source": "cells",
                                                                               "previous_message_id": None}))
        return _Turn(conv, mid, sid, r.epoch, r.first_seq)

    async def send(self, t: _Turn, kinds: tuple[str, ...]) -> str:
        r = await self.store.append(t.call(kinds))
        if r.status == "OK":
            t.last, t.step = r.last_seq, t.step + len(kinds)
        return r.status

    async def finished(self, conv: str | None = None, run_s: float = 0.0) -> _Turn:
        t = await self.open(conv)
        self.clock.advance(run_s)
        assert await self.send(t, ("complete",)) == "OK"
        return t

    def key(self, t: _Turn, i: int) -> str:
        return self.store.keys(t.conv)[i]


def _sup() -> bytes:
    return encode_payload("cancelled", {"reason": "superseded"})


async def _append(w: _Walk, c: Cell) -> str:
    kinds = SHAPES[c.shape]
    if c.outcome == "NO_STREAM":
        return (await w.store.append(_Turn(w.conv(), "m", "s", "e", 1).call(kinds))).status
    t = await w.open()
    if c.outcome in ("OK", "DUP"):
        call = t.call(kinds)
        first = await w.store.append(call)
        if c.outcome == "OK":
            return first.status
        again = await w.store.append(call)  # the first reply was lost: the identical resend
        same = (again.first_seq, again.last_seq) == (first.first_seq, first.last_seq)
        return again.status if same or again.status != "DUP" else f"DUP at {again.first_seq}..{again.last_seq}"
    if c.outcome == "CONFLICT":
        assert await w.send(t, ("recovery",)) == "OK"
        return (await w.store.append(t.call(kinds, prev=t.last - 1))).status
    if c.outcome == "FENCED":
        await w.store.redis.delete(w.key(t, 4))
    elif c.outcome == "CLOSED":
        await w.store.redis.hset(w.key(t, 2), f"{t.mid}|status", "interrupted")
    elif c.outcome == "EPOCH":
        return (await w.store.append(t.call(kinds, epoch="rotated"))).status
    elif c.outcome == "ROLLBACK":
        return (await w.store.append(t.call(kinds, prev=t.last + 5))).status
    elif c.outcome == "IDEM_MISMATCH":
        assert await w.send(t, ("text_delta", "text_delta")) == "OK"
        return (await w.store.append(t.call(kinds, step=2, prev=1))).status
    elif c.outcome == "BAD_BATCH":
        return (await w.store.append(t.call(("complete", "text_delta")))).status
    return (await w.store.append(t.call(kinds))).status


async def _open_turn(w: _Walk, c: Cell) -> str:
    if c.outcome == "DUP":
        t = await w.open()
        return (await w.store.open_turn(t.conv, t.mid, t.sid, ts_ms=_TS, superseded_payload=_sup(),
                                        payload=encode_payload("turn_started", {"model_id": "m", "source": "cells",
                                                                                "previous_message_id": None}))).status
    conv = w.conv()
    if c.shape == "supersede":
        t = await w.open(conv)
        await w.store.redis.delete(w.key(t, 4))
    elif c.outcome == "BUSY":
        await w.open(conv)
    r = await w.store.open_turn(conv, "mnext", "s:next", ts_ms=_TS, superseded_payload=_sup(),
                                payload=encode_payload("turn_started", {"model_id": "m", "source": "cells",
                                                                        "previous_message_id": None}))
    return r.status


async def _renew(w: _Walk, c: Cell) -> str:
    t = await w.open()
    if c.outcome == "FENCED":
        await w.store.redis.delete(w.key(t, 4))
    elif c.lost:
        await w.store.renew(t.conv, t.sid)
    return (await w.store.renew(t.conv, t.sid)).status


async def _reap(w: _Walk, c: Cell) -> str:
    payload = encode_payload("cancelled", {"reason": "producer_lost"})
    if c.outcome == "NO_STREAM":
        return (await w.store.reap(w.conv(), None, "reaper:cells", payload)).status
    t = await w.open()
    if c.outcome != "LEASED":
        await w.store.redis.delete(w.key(t, 4))
    mid = "unknown" if c.outcome == "NONE" else t.mid
    if c.lost:
        await w.store.reap(t.conv, mid, "reaper:cells", payload)
    return (await w.store.reap(t.conv, mid, "reaper:cells", payload)).status


async def _trim(w: _Walk, c: Cell) -> str:
    conv = w.conv()
    if c.outcome == "REFUSED":
        await w.open(conv)
        return (await w.store.trim(conv, keep_last=0)).status
    if c.shape == "age":
        # NOOP: a 100 s turn that ended 1 s ago is not older than 50 s, whenever it was created
        await w.finished(conv, run_s=0.0 if c.outcome == "OK" else 100.0)
        w.clock.advance(60.0 if c.outcome == "OK" else 1.0)
        return (await w.store.trim(conv, older_than_s=50.0)).status
    await w.finished(conv)
    await w.finished(conv)
    if c.lost:
        await w.store.trim(conv, keep_last=1)
    return (await w.store.trim(conv, keep_last=1)).status


async def _rebase(w: _Walk, c: Cell) -> str:
    if c.outcome == "NO_STREAM":
        return (await _rebase_call(w, _Turn(w.conv(), "m", "s", "e", 1))).status
    t = await (w.finished() if c.outcome == "ALREADY_TERMINAL" else w.open())
    if c.outcome == "FENCED":
        await w.store.redis.set(w.key(t, 4), "s:other")
    elif c.outcome == "NO_RECORD":
        t.mid = "lost"
    if c.lost:
        await _rebase_call(w, t)
    return (await _rebase_call(w, t, last=t.last - 1 if c.outcome == "CONFLICT" else t.last)).status


async def _rebase_call(w: _Walk, t: _Turn, last: int | None = None):
    return await w.store.rebase(t.conv, t.mid, t.sid, old_epoch=t.epoch, new_epoch=t.epoch + "n",
                                last_seq=t.last if last is None else last, step=t.step + 1, ts_ms=_TS,
                                payload=encode_payload("error", {"code": "store.rollback", "stage": "store",
                                                                 "message": "lost", "retriable": False,
                                                                 "partial": True}),
                                error_code="store.rollback", error_message="lost")


_DRIVERS: dict[str, Callable[[_Walk, Cell], Awaitable[str]]] = {
    "append": _append, "open_turn": _open_turn, "renew": _renew, "reap": _reap, "trim": _trim, "rebase": _rebase}


async def walk(store: StreamStore, cells: tuple[Cell, ...] = CELLS) -> list[CellResult]:
    """Drive each cell once, in a fresh conversation, on a scripted clock; the store's prefix should be
    private to the walk. Returns what each cell's last call answered (an exception counts as its type)."""
    clock = ManualClock(start=1_700_000_000.0)
    store.clock = clock
    w = _Walk(store, clock)
    out = []
    for c in cells:
        try:
            observed = await _DRIVERS[c.script](w, c)
        except Exception as exc:  # a broken store must show as an unreached cell, not stop the walk
            observed = f"{type(exc).__name__}: {exc}"
        out.append(CellResult(c, observed))
    return out


def render(results: list[CellResult]) -> str:
    """The walk as a table: one row per cell, what it answered, and whether that is the cell's outcome."""
    rows = [f"{'script':<10} {'outcome':<17} {'shape':<10} {'lost':<5} {'reached':<8} observed"]
    for r in results:
        c = r.cell
        rows.append(f"{c.script:<10} {c.outcome:<17} {c.shape:<10} {'yes' if c.lost else '':<5} "
                    f"{'yes' if r.reached else 'NO':<8} {r.observed}")
    return "\n".join(rows)


def unreached(results: list[CellResult]) -> list[str]:
    return [f"{r.cell.name} answered {r.observed}" for r in results if not r.reached]


def markdown_table(cells: tuple[Cell, ...] = CELLS) -> str:
    """The table of docs/stream-design.md#script-outcome-cells (a test keeps the doc equal to it)."""
    rows = ["| script | outcome | shape | lost reply | how |", "|---|---|---|---|---|"]
    rows += [f"| {c.script} | {c.outcome} | {c.shape} | {'yes' if c.lost else ''} | {c.how} |" for c in cells]
    return "\n".join(rows)
