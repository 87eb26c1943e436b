"""The kernel's transition cells (state × op × outcome/guard) and their coverage
(docs/breaker-design.md#transition-cells).

A random machine rarely draws the long paths (trip, cooldown, probe won, release), so coverage is
measured per cell and enforced: :func:`cell_of` names the cell one op falls into, given the record
*before* it, and :class:`CellCoverage` counts them and lists what was not reached.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

from . import kernel
from .record import Record

#: cell -> what it is (the table docs/breaker-design.md#transition-cells shows)
CELLS: dict[str, str] = {
    "gate:closed": "G1 CLOSED admits, no write",
    "gate:open-cooldown": "G2 OPEN before open_until rejects",
    "gate:open-elapsed": "G3 OPEN after open_until: probe won (open->half_open)",
    "gate:half_open-free": "G4 HALF_OPEN without a probe: probe won",
    "gate:half_open-busy": "G5 HALF_OPEN with a live probe rejects every other caller",
    "gate:half_open-lease-expired": "G6 HALF_OPEN, lease expired: probe reclaimed",
    "gate:duplicate": "a resent gate (op id in recent_ops) replies the recorded decision",
    "record_failure:closed-below": "F1 CLOSED, count below the threshold",
    "record_failure:closed-at-threshold": "F2 CLOSED, count reaches the threshold: trip",
    "record_failure:open": "F3 OPEN: the cooldown is extended (max-merge)",
    "record_failure:half_open": "F4 HALF_OPEN: reopen",
    "record_failure:duplicate": "a resent failure is counted once",
    "record_success:closed-zero": "S2 CLOSED, count 0: no write",
    "record_success:closed-nonzero": "S2 CLOSED, count > 0: count reset",
    "record_success:open": "S3 OPEN: guard, no write",
    "record_success:half_open": "S4 HALF_OPEN by a non-owner (strict): no write",
    "record_success:expected-mismatch": "S1 expected state differs: no write",
    "release_probe:owner-success": "P1 the owner's success closes and zeroes the count",
    "release_probe:owner-failure": "P2 the owner's failure reopens",
    "release_probe:owner-abort": "P3 the owner's abort reopens without counting",
    "release_probe:owner-free": "P4 the owner frees the slot (HALF_OPEN stays)",
    "release_probe:stale-token": "P5 HALF_OPEN, token not current: no write",
    "release_probe:not-half_open": "P5 not HALF_OPEN: no write",
    "renew_probe:own-extend": "the owner's renew extends the lease",
    "renew_probe:own-no-change": "the owner's renew with a shorter lease keeps it",
    "renew_probe:stale": "a stale token's renew is refused",
    "force_open:closed": "X1 from CLOSED",
    "force_open:half_open": "X1 from HALF_OPEN (the probe is cleared)",
    "force_open:open-longer": "X1 OPEN, longer: open_until grows",
    "force_open:open-shorter": "X1 OPEN, shorter: no write",
    "reset:closed": "X2 from CLOSED",
    "reset:open": "X2 from OPEN",
    "reset:half_open": "X2 from HALF_OPEN",
}


def cell_of(op: str, rec: Record, inp: Mapping[str, Any]) -> str | None:
    """The cell of ``op`` with input ``inp`` (history-input keys, ``now`` set) on ``rec`` (before).
    ``None`` for ops outside the table (get_state)."""
    rec = kernel.normalize(rec)
    now = float(inp.get("now", 0.0))
    oid = inp.get("op_id")
    st = rec.state
    if op in ("gate", "record_failure") and oid is not None and kernel._find(rec, oid) is not None:
        return f"{op}:duplicate"
    if op == "gate":
        if st != "half_open":
            return "gate:closed" if st == "closed" else (
                "gate:open-cooldown" if now < rec.open_until else "gate:open-elapsed")
        if not rec.half_open_probe_active:
            return "gate:half_open-free"
        return "gate:half_open-busy" if now < rec.probe_lease_until else "gate:half_open-lease-expired"
    if op == "record_failure":
        if st == "closed":
            below = kernel._inc(rec.failure_count) < int(inp.get("failure_threshold", 5))
            return "record_failure:closed-below" if below else "record_failure:closed-at-threshold"
        return f"record_failure:{st}"
    if op == "record_success":
        exp = inp.get("expected_state")
        if exp and exp != st:
            return "record_success:expected-mismatch"
        if st == "closed":
            return "record_success:closed-zero" if rec.failure_count == 0 else "record_success:closed-nonzero"
        return f"record_success:{st}"
    if op == "release_probe":
        if kernel.token_current(rec, inp.get("token", "")):
            return f"release_probe:owner-{inp.get('outcome')}"
        return "release_probe:stale-token" if st == "half_open" else "release_probe:not-half_open"
    if op == "renew_probe":
        if not kernel.token_current(rec, inp.get("token", "")):
            return "renew_probe:stale"
        grows = kernel.q6(now + float(inp.get("lease_seconds", 30.0))) > rec.probe_lease_until
        return "renew_probe:own-extend" if grows else "renew_probe:own-no-change"
    if op == "force_open":
        if st != "open":
            return f"force_open:{st}"
        target = kernel.q6(now + float(inp.get("open_for_seconds", 0.0)))
        return "force_open:open-longer" if target > rec.open_until else "force_open:open-shorter"
    if op == "reset":
        return f"reset:{st}"
    return None


class CellCoverage:
    """Counts reached cells; :meth:`table` prints them, :meth:`missing` lists the unreached."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.counts: Counter[str] = Counter()

    def add(self, cell: str | None) -> None:
        if cell is not None:
            self.counts[cell] += 1

    def missing(self) -> list[str]:
        return [c for c in CELLS if not self.counts[c]]

    def table(self) -> str:
        w = max(len(c) for c in CELLS)
        rows = [f"transition cells{' on ' + self.name if self.name else ''}: "
                f"{len(CELLS) - len(self.missing())}/{len(CELLS)} reached"]
        rows += [f"  {c:<{w}}  {self.counts[c]:>5}  {CELLS[c]}" for c in CELLS]
        return "\n".join(rows)
