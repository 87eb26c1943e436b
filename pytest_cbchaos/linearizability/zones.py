"""Polynomial-time decision for registers whose writes are distinct (docs/linearizability-design.md#register-fast-path).

When every write of a register writes a value no other write (and not the initial value) writes,
each read names the write it read from. Gibbons & Korach ("Testing shared memories", SIAM J.
Comput. 1997) showed that linearizability then reduces to ordering constraints; this module uses
the *zone* form of that result (as in Golab, Li & Shah, PODC 2011). A *cluster* is a write and the
reads of its value; its zone runs from the earliest return to the latest call among its ops. If
the earliest return comes first, the zone is *forward*: the value must live through it. Otherwise
it is *backward*: the cluster fits anywhere in it. The history is linearizable iff every read's
write exists and is called before the read returns, no two forward zones overlap, and no backward
zone lies inside a forward one. That is ``O(n log n)`` where the general search is exponential.

Intervals are closed (ops whose ends touch are concurrent), so every comparison is strict.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..history.ops import INF, Op
from .values import canonical

#: the initial value's pseudo-write is called and returns before everything
_BEFORE_ALL = -INF


@dataclass
class ZoneDecision:
    """``legal`` or not; for an illegal history, ``witness`` holds the ops of the violating
    clusters (an illegal sub-history on its own) and ``reason`` says which rule they break."""

    legal: bool
    reason: str = ""
    witness: list[Op] = field(default_factory=list)


@dataclass
class _Cluster:
    write: Op | None  # None: the initial value
    reads: list[Op] = field(default_factory=list)

    def ops(self) -> list[Op]:
        return ([self.write] if self.write is not None else []) + self.reads

    def zone(self) -> tuple[float, float]:
        """(earliest return, latest call) over the cluster's ops."""
        ops = self.ops()
        first_ret = min((op.ret for op in ops), default=INF)
        last_call = max((op.call for op in ops), default=_BEFORE_ALL)
        if self.write is None:
            first_ret = _BEFORE_ALL
        return first_ret, last_call


def _key(v: Any) -> Any:
    """The value's identity for reads-from, or ``_NA`` where equality is not plain."""
    if v is None or isinstance(v, (str, bytes)) or (isinstance(v, int) and not isinstance(v, bool)):
        return canonical(v)
    return _NA


_NA = object()


def decide(ops: Sequence[Op], *, initial: Any = None, read: str = "read",
           write: str = "write") -> ZoneDecision | None:
    """Decide one register partition, or ``None`` when the fast path does not apply (another
    operation, a value that is not a plain scalar, or two writes of one value)."""
    for op in ops:  # first, cheaply: another operation (a kv append, a cas) rules the fast path out
        if op.f != read and op.f != write:
            return None
    init_key = _key(initial)
    if init_key is _NA:
        return None
    clusters: dict[Any, _Cluster] = {init_key: _Cluster(None)}
    reads: list[Op] = []
    for op in ops:
        if op.f == write:
            k = _key(op.input)
            if k is _NA or k in clusters:
                return None
            clusters[k] = _Cluster(op)
        elif not op.unknown:  # a read
            reads.append(op)
    for r in reads:
        k = _key(r.output)
        if k is _NA:
            return None
        c = clusters.get(k)
        if c is None:
            return ZoneDecision(False, f"read {r.output!r}, a value no write wrote", [r])
        if c.write is not None and c.write.call > r.ret:
            return ZoneDecision(False, f"read {r.output!r} returned before its write was called",
                                [c.write, r])
        c.reads.append(r)
    return _judge_zones([c for c in clusters.values() if c.write is not None or c.reads])


def _judge_zones(clusters: list[_Cluster]) -> ZoneDecision:
    forward: list[tuple[float, float, _Cluster]] = []
    backward: list[tuple[float, float, _Cluster]] = []
    for c in clusters:
        if c.write is not None and c.write.unknown and not c.reads:
            continue  # a write nobody saw may never have happened: it constrains nothing
        first_ret, last_call = c.zone()
        if first_ret < last_call:
            forward.append((first_ret, last_call, c))
        else:
            backward.append((last_call, first_ret, c))
    forward.sort(key=lambda z: z[0])
    for a, b in zip(forward, forward[1:]):
        if b[0] < a[1]:
            return ZoneDecision(False, "two values had to be current at the same time "
                                "(overlapping forward zones)", a[2].ops() + b[2].ops())
    starts = [z[0] for z in forward]
    for lo, hi, c in backward:
        # forward zones are disjoint: only the last one starting before ``lo`` can contain it
        i = bisect.bisect_left(starts, lo) - 1
        if i >= 0 and hi < forward[i][1]:
            return ZoneDecision(False, "a write and its reads fit only inside another value's "
                                "lifetime (backward zone inside a forward zone)",
                                forward[i][2].ops() + c.ops())
    return ZoneDecision(True)
