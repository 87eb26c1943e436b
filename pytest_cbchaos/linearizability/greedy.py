"""A greedy linearization of one kv key's reads, puts and appends of strings, tried before the
search (docs/linearizability-design.md#greedy-linearization).

The ops' entries are scanned in the search's order (by time, a call before a return at the same
time), keeping the state and the open (called, not yet linearized) ops. A read is linearized as
soon as the state is what it read: at its call, or right after an update. An update is
linearized at its return at the latest; before it, the open appends (and a put) that one of the
next reads shows between the state and the update's value. A read still open at its return first
has open updates applied that lead the state towards its value (an append of the value's next
part, else a put the value starts with; the one that returns first). A put that returns while
the state has moved on since a later put was linearized, and that the next read does not show,
is placed just before that put (it was open then, and is overwritten at once).

Every op is placed between its call and its return, in a state it is legal in, so an order found
is a linearization and the partition is OK. When no choice fits, the greedy answers None and the
search decides: it is never the ground for an ILLEGAL verdict. Porcupine's c10-ok kv history is
placed this way key by key (one pass instead of the search's setup and 834 steps), and half of
c50-ok's keys.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from ..history.ops import Op
from .search import OK, Entry, entries

_READ, _WRITE, _APPEND = "read", "write", "append"

#: the most open updates (clients at once, and crashed ones, which stay open) the greedy takes:
#: each choice scans them
MAX_OPEN = 100
#: an update's return looks for a read that shows it among this many next reads in call order
LOOKAHEAD = 8

Open = dict[int, Op]


def greedy_linearization(ops: Sequence[Op], initial: Any, ents: list[Entry] | None = None,
                         deadline: float | None = None) -> list[tuple[int, str]] | None:
    """``(op id, state after)`` in a linearization of ``ops`` (ids 0..n-1, each op's ``step`` as
    the kv key model's on ``str`` values), or None: stuck, or ops it does not take (a cas, a
    crashed read, a value or an initial value that is not a ``str``, too many open updates)."""
    return attempt(ops, initial, ents, deadline)[0]


def attempt(ops: Sequence[Op], initial: Any, ents: list[Entry] | None = None,
            deadline: float | None = None) -> tuple[list[tuple[int, str]] | None, float]:
    """:func:`greedy_linearization`, and where it got stuck: the share of the entries scanned by
    then (1.0 if it did not). A read no open update leads to, early in a partition, is a hint
    that the partition is illegal there (the scheduler tries such partitions first).
    ``ents``: ``search.entries(ops)``, where the caller has them (to hand on to the search).
    ``deadline`` (``time.monotonic()``): checked every 1,024 entries, past it None (a scan costs
    up to the open updates times the lookahead reads' lengths an entry, so a long key with long
    values must not run past the check's timeout before the search, which checks it too)."""
    if type(initial) is not str:
        return None, 1.0
    if ents is None:
        ents = entries(ops)
    later = [e[3] for e in reversed(ents) if not e[1] and ops[e[3]].f == _READ]  # reads, last called first
    for r in later:  # a read's value is looked ahead at before its call
        op = ops[r]
        if op.unknown or type(op.output) is not str:
            return None, 1.0
    state: str = initial
    lin: list[tuple[int, str]] = []
    done = [False] * len(ops)
    called = [0] * len(ops)  # the scan position of each op's call
    apps: Open = {}  # open appends
    puts: Open = {}  # open puts
    reads: dict[str, list[int]] = {}  # open reads by the value read
    last_put = [-1, -1]  # the latest put linearized: scan position then, place in ``lin``
    for chunk in range(0, len(ents), 1024):
        if chunk and deadline is not None and time.monotonic() > deadline:
            return None, 1.0
        for pos, (_, ret, _, i) in enumerate(ents[chunk:chunk + 1024], chunk):
            op = ops[i]
            f = op.f
            if not ret:
                called[i] = pos
                if f == _READ:
                    v = op.output
                    if v == state:
                        done[i] = True
                        lin.append((i, state))
                    else:
                        reads.setdefault(v, []).append(i)
                    continue
                if type(op.input) is not str or len(apps) + len(puts) >= MAX_OPEN:
                    return None, 1.0
                if f == _APPEND:
                    apps[i] = op
                elif f == _WRITE:
                    puts[i] = op
                else:
                    return None, 1.0
                continue
            if done[i]:
                continue
            if f == _READ:
                while not done[i]:
                    u = _towards(apps, puts, state, op.output)
                    if u < 0:
                        return None, pos / len(ents)
                    state = _apply(apps, puts, u, state, lin, done, reads, pos, last_put)
                continue
            while later and done[later[-1]]:
                later.pop()
            if f == _WRITE and _open_at(last_put[0], called[i]) and not (
                    later and ops[later[-1]].output.startswith(op.input)):
                # open when the latest put was linearized: just before that one it is legal and
                # overwritten at once, so no read sees it (nor does the next one want it now)
                del puts[i]
                done[i] = True
                lin.insert(last_put[1], (i, op.input))
                last_put[1] += 1
                continue
            nxt = ops[later[-1]].output if later else ""
            if not (nxt.startswith(state) and nxt.startswith(op.input, len(state))):  # else: shown next
                for u in _before(ops, apps, puts, i, state, later, done):
                    state = _apply(apps, puts, u, state, lin, done, reads, pos, last_put)
            state = _apply(apps, puts, i, state, lin, done, reads, pos, last_put)
    return lin, 1.0


def _open_at(put_pos: int, call_pos: int) -> bool:
    """Whether an op called at scan position ``call_pos`` was open when the latest put was
    linearized (at ``put_pos``; -1: none yet)."""
    return put_pos > call_pos


def _apply(apps: Open, puts: Open, i: int, state: str, lin: list[tuple[int, str]], done: list[bool],
           reads: dict[str, list[int]], pos: int, last_put: list[int]) -> str:
    """Linearize the open update ``i`` in ``state`` (at scan position ``pos``), then every open
    read of the new state; the new state."""
    op = apps.pop(i, None)
    if op is not None:
        state = state + op.input
    else:
        state = puts.pop(i).input
        last_put[0], last_put[1] = pos, len(lin)
    done[i] = True
    lin.append((i, state))
    for r in reads.pop(state, ()):
        done[r] = True
        lin.append((r, state))
    return state


def _before(ops: Sequence[Op], apps: Open, puts: Open, x: int, state: str, later: list[int],
            done: list[bool]) -> list[int]:
    """The open updates to linearize before update ``x``, which returns now: those the first of
    the next reads that shows ``x`` shows between the state and ``x``'s value (a put, then
    appends); none if no such read."""
    if x not in apps:
        return []
    for k in range(len(later) - 1, max(len(later) - 1 - LOOKAHEAD, -1), -1):
        r = later[k]
        if done[r]:  # linearized before reads called earlier
            continue
        v = ops[r].output
        if v.startswith(state):
            chain = _spelled_until(apps, v, len(state), x)
        else:  # a put first
            w = _put_for(puts, v)
            chain = None if w < 0 else _spelled_until(apps, v, len(puts[w].input), x)
            if chain is not None:
                chain.insert(0, w)
        if chain is not None:
            return chain
    return []


def _spelled_until(apps: Open, v: str, pos: int, x: int) -> list[int] | None:
    """The open appends that spell ``v`` from ``pos`` up to the open append ``x`` (each the first
    to return of those that fit), without ``x``; None if the spelling stops before ``x``."""
    chain: list[int] = []
    end, tail = len(v), apps[x].input
    if v.find(tail, pos) < 0:  # ``v`` does not show ``x`` (the common case, found in C)
        return None
    while pos < end:
        if v.startswith(tail, pos):
            return chain
        best, best_op = -1, None
        for u, op in apps.items():
            t = op.input
            if (t and u != x and v.startswith(t, pos) and (best_op is None or op.ret < best_op.ret)
                    and u not in chain):
                best, best_op = u, op
        if best_op is None:
            return None
        chain.append(best)
        pos += len(best_op.input)
    return None


def _towards(apps: Open, puts: Open, state: str, target: str) -> int:
    """The open update, returning first, that leads ``state`` towards ``target``: an append of
    its next part when ``state`` is a prefix of it, else a put ``target`` starts with; -1 if none."""
    if target.startswith(state):
        best, best_op, pos = -1, None, len(state)
        for u, op in apps.items():
            t = op.input
            if t and target.startswith(t, pos) and (best_op is None or op.ret < best_op.ret):
                best, best_op = u, op
        if best_op is not None:
            return best
    return _put_for(puts, target)


def _put_for(puts: Open, target: str) -> int:
    """The open put, returning first, whose value ``target`` starts with; -1 if none."""
    best, best_op = -1, None
    for u, op in puts.items():
        if target.startswith(op.input) and (best_op is None or op.ret < best_op.ret):
            best, best_op = u, op
    return best


class GreedyLinearized:
    """A partition the greedy linearized: OK, with the scheduler's interface of a search (as
    ``replay.SequentialReplay``)."""

    cache_entries = 0
    reason = ""
    status = OK

    def __init__(self, ops: Sequence[Op], linearization: list[tuple[int, Any]], elapsed_s: float) -> None:
        self.ops = list(ops)
        self.linearization = linearization
        self.n_required = self.best_prefix_len = sum(not op.unknown for op in ops)
        self.steps = len(linearization)
        self.elapsed_s = elapsed_s

    def run(self, max_steps: int, deadline: float | None = None) -> str:
        return OK
