"""Pure transition functions for every store operation: the single reference semantics
(docs/breaker-design.md#state-machine).

No I/O, no clocks: every function takes the decoded :class:`~.record.Record`, the op's ``now``
(wall seconds) and its arguments, and returns an :class:`Outcome`. ``InMemoryStore`` and the
Redis WATCH fallback call these; the Lua scripts mirror them and a differential test holds them
equal; :mod:`.model` wraps them for the linearizability checker.

Stable API (used by other areas)::

    normalize(rec) -> Record                                  # rule N
    gate(rec, now, op_id, lease_seconds) -> Outcome           # G1-G7
    record_failure(rec, now, op_id, failure_threshold, recovery_timeout) -> Outcome   # F1-F4
    record_success(rec, now, op_id, expected_state=None, strict=True) -> Outcome  # S1-S4
    release_probe(rec, now, op_id, token, outcome, recovery_timeout) -> Outcome   # P1-P5
    renew_probe(rec, now, token, lease_seconds) -> Outcome    # P5 / lease max
    force_open(rec, now, op_id, open_for_seconds) -> Outcome  # X1
    reset(rec, now, op_id) -> Outcome                         # X2
    cas_state(rec, expected_state, updates, expected_fields=None) -> Outcome
    increment_failure(rec, now) -> Outcome
    ttl_for(rec, now, ttl, probe_ttl) -> int                  # docs/breaker-design.md#ttl-rules

Op ids: ``op_id`` is 32 lowercase hex. Every *applied* op except renew/cas/increment appends
``(op_id, prev, new)`` to ``recent_ops`` (newest 16); an op whose id is already there is a
duplicate: nothing is written and the recorded pair is reported (docs/breaker-design.md#one-round-trip-per-decision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .record import DEFAULT, MASSGEN_FIELDS, MAX_COUNT, RECENT_OPS_MAX, STATES, Record, q6

REASONS = ("guard_open", "expected_mismatch", "stale_token", "not_half_open", "cooldown", "probe_busy",
           "legacy_probe_leased", "duplicate", "")
LABEL_OPEN = "open->half_open"
LABEL_CLAIMED = "half_open_probe_claimed"
LABEL_RECLAIMED = "half_open_probe_reclaimed"
OUTCOMES = ("success", "failure", "abort", "free")


@dataclass(frozen=True, slots=True)
class Outcome:
    """Result of one op: the post-op record (normalised) and the reply metadata."""

    record: Record
    prev_state: str
    new_state: str
    applied: bool
    reason: str = ""
    label: str = ""
    won: bool = False
    duplicate: bool = False
    value: Any = None  # renew: bool; cas: bool; increment: int

    def meta(self, now: float, corrupt: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"_prev_state": self.prev_state, "_prev_was_half_open": self.prev_state == "half_open",
                "_new_state": self.new_state, "_applied": self.applied, "_now": now,
                "_reason": self.reason, "_duplicate": self.duplicate, "_corrupt": list(corrupt)}


def _clear(rec: Record, **kw: Any) -> Record:
    return rec.replace(half_open_probe_active=False, probe_token="", probe_lease_until=0.0,
                       probe_anchor=0.0, **kw)


def normalize(rec: Record) -> Record:
    """Rule N: probe fields count only in HALF_OPEN with the flag set and anchor == open_until."""
    if rec.state == "half_open" and rec.half_open_probe_active and rec.probe_anchor == rec.open_until:
        return rec
    if rec.probe_token == "" and rec.probe_lease_until == 0.0 and rec.probe_anchor == 0.0:
        return rec
    return rec.replace(probe_token="", probe_lease_until=0.0, probe_anchor=0.0)


def token_current(rec: Record, token: str) -> bool:
    return (rec.state == "half_open" and rec.half_open_probe_active and rec.probe_token != ""
            and rec.probe_token == token and rec.probe_anchor == rec.open_until)


def _push(rec: Record, op_id: str, prev: str, new: str) -> Record:
    ops = rec.recent_ops + ((op_id, prev, new),)
    if len(ops) > RECENT_OPS_MAX:
        ops = ops[-RECENT_OPS_MAX:]
    return rec.replace(recent_ops=ops)


def _find(rec: Record, op_id: str | None) -> tuple[str, str] | None:
    if op_id is None:
        return None
    for o, a, b in rec.recent_ops:
        if o == op_id:
            return a, b
    return None


def _dup(rec: Record, pair: tuple[str, str]) -> Outcome:
    return Outcome(rec, pair[0], pair[1], False, "duplicate", duplicate=True)


def _applied(rec: Record, new: Record, op_id: str, **kw: Any) -> Outcome:
    return Outcome(_push(new, op_id, rec.state, new.state), rec.state, new.state, True, **kw)


def _noop(rec: Record, reason: str = "", **kw: Any) -> Outcome:
    return Outcome(rec, rec.state, rec.state, False, reason, **kw)


def _claim(rec: Record, now: float, op_id: str, lease: float) -> Record:
    gen = rec.probe_generation + 1
    return rec.replace(state="half_open", half_open_probe_active=True, probe_generation=gen,
                       probe_token=f"{gen}:{op_id}", probe_lease_until=q6(now + lease),
                       probe_anchor=rec.open_until)


def _inc(n: int) -> int:
    return n + 1 if n < MAX_COUNT else MAX_COUNT


def gate(rec: Record, now: float, op_id: str, lease_seconds: float) -> Outcome:
    """G1-G7. ``won`` = probe claimed; ``label`` set when won."""
    rec = normalize(rec)
    dup = _find(rec, op_id)
    if dup is not None:
        out = _dup(rec, dup)
        if rec.probe_token.endswith(":" + op_id) and token_current(rec, rec.probe_token):
            label = LABEL_OPEN if dup[0] == "open" else LABEL_CLAIMED
            return Outcome(rec, dup[0], dup[1], False, "duplicate", label=label, won=True, duplicate=True)
        return out
    if rec.state == "closed":
        return _noop(rec)  # G1
    if rec.state == "open":
        if now < rec.open_until:
            return _noop(rec, "cooldown")  # G2
        return _applied(rec, _claim(rec, now, op_id, lease_seconds), op_id, label=LABEL_OPEN, won=True)  # G3
    if not rec.half_open_probe_active:
        return _applied(rec, _claim(rec, now, op_id, lease_seconds), op_id, label=LABEL_CLAIMED, won=True)  # G4
    if rec.probe_token == "" and rec.probe_lease_until == 0.0:  # G7: legacy claim without a lease
        new = rec.replace(probe_lease_until=q6(now + lease_seconds), probe_anchor=rec.open_until)
        return _applied(rec, new, op_id, reason="legacy_probe_leased")
    if now < rec.probe_lease_until:
        return _noop(rec, "probe_busy")  # G5
    return _applied(rec, _claim(rec, now, op_id, lease_seconds), op_id, label=LABEL_RECLAIMED, won=True)  # G6


def record_failure(rec: Record, now: float, op_id: str, failure_threshold: int, recovery_timeout: float) -> Outcome:
    """F1-F4."""
    rec = normalize(rec)
    dup = _find(rec, op_id)
    if dup is not None:
        return _dup(rec, dup)
    count = _inc(rec.failure_count)
    last = q6(now)
    if rec.state == "closed" and count < failure_threshold:
        return _applied(rec, rec.replace(failure_count=count, last_failure_time=last), op_id)  # F1
    until = max(rec.open_until, q6(now + recovery_timeout))
    new = _clear(rec, state="open", failure_count=count, last_failure_time=last, open_until=until)
    return _applied(rec, new, op_id)  # F2, F3, F4


def record_success(rec: Record, now: float, op_id: str, expected_state: str | None = None,
                   strict: bool = True) -> Outcome:
    """S1-S4 (``expected_state=""`` means None)."""
    rec = normalize(rec)
    dup = _find(rec, op_id)
    if dup is not None:
        return _dup(rec, dup)
    if expected_state and expected_state != rec.state:
        return _noop(rec, "expected_mismatch")  # S1
    if rec.state == "closed":
        if rec.failure_count == 0:
            return _noop(rec)
        return _applied(rec, rec.replace(failure_count=0), op_id)  # S2
    if rec.state == "open":
        return _noop(rec, "guard_open")  # S3
    if strict:
        return _noop(rec, "stale_token")  # S4
    return _applied(rec, _clear(rec, state="closed", failure_count=0), op_id)


def release_probe(rec: Record, now: float, op_id: str, token: str, outcome: str,
                  recovery_timeout: float) -> Outcome:
    """P1-P5."""
    rec = normalize(rec)
    dup = _find(rec, op_id)
    if dup is not None:
        return _dup(rec, dup)
    if not token_current(rec, token):
        return _noop(rec, "not_half_open" if rec.state != "half_open" else "stale_token")  # P5
    if outcome == "success":
        new = _clear(rec, state="closed", failure_count=0)
    elif outcome == "failure":
        new = _clear(rec, state="open", failure_count=_inc(rec.failure_count), last_failure_time=q6(now),
                     open_until=max(rec.open_until, q6(now + recovery_timeout)))
    elif outcome == "abort":
        new = _clear(rec, state="open", open_until=max(rec.open_until, q6(now + recovery_timeout)))
    elif outcome == "free":
        new = _clear(rec)
    else:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    return _applied(rec, new, op_id)


def renew_probe(rec: Record, now: float, token: str, lease_seconds: float) -> Outcome:
    """True iff the token is current; then lease = max(old, now + L). Not recorded in recent_ops."""
    rec = normalize(rec)
    if not token_current(rec, token):
        return _noop(rec, "not_half_open" if rec.state != "half_open" else "stale_token", value=False)
    lease = max(rec.probe_lease_until, q6(now + lease_seconds))
    if lease == rec.probe_lease_until:
        return _noop(rec, value=True)
    return Outcome(rec.replace(probe_lease_until=lease), rec.state, rec.state, True, value=True)


def force_open(rec: Record, now: float, op_id: str, open_for_seconds: float) -> Outcome:
    """X1: one atomic max-merge."""
    rec = normalize(rec)
    dup = _find(rec, op_id)
    if dup is not None:
        return _dup(rec, dup)
    target = q6(now + open_for_seconds)
    if rec.state == "open" and not target > rec.open_until:
        return _noop(rec)
    new = _clear(rec, state="open", open_until=max(rec.open_until, target),
                 last_failure_time=max(rec.last_failure_time, q6(now)))
    return _applied(rec, new, op_id)


def reset(rec: Record, now: float, op_id: str) -> Outcome:
    """X2: massgen defaults, clear probe; generation and recent_ops kept; always writes."""
    rec = normalize(rec)
    dup = _find(rec, op_id)
    if dup is not None:
        return _dup(rec, dup)
    new = DEFAULT.replace(probe_generation=rec.probe_generation, recent_ops=rec.recent_ops)
    return _applied(rec, new, op_id)


def increment_failure(rec: Record, now: float) -> Outcome:
    """massgen compat: count + 1, no transition."""
    rec = normalize(rec)
    new = rec.replace(failure_count=_inc(rec.failure_count))
    return Outcome(new, rec.state, rec.state, True, value=new.failure_count)


def _same(field: str, stored: Any, want: Any) -> bool:
    try:
        if isinstance(stored, bool):
            return stored == (want in (True, "True"))
        if isinstance(stored, float):
            return stored == float(want)
        if isinstance(stored, int):
            return stored == int(want)
    except (TypeError, ValueError):
        return False
    return stored == want


def cas_state(rec: Record, expected_state: str, updates: Record | Mapping[str, Any],
              expected_fields: Mapping[str, Any] | None = None) -> Outcome:
    """massgen CAS on ``state`` (+ ours: ``expected_fields``); ``updates`` already validated."""
    rec = normalize(rec)
    if expected_state not in STATES or rec.state != expected_state:
        return _noop(rec, "expected_mismatch", value=False)
    for k, v in (expected_fields or {}).items():
        if not _same(k, getattr(rec, k), v):
            return _noop(rec, "expected_mismatch", value=False)
    upd = dict(updates) if not isinstance(updates, Record) else {}
    new = normalize(rec.replace(**{k: v for k, v in upd.items() if k in MASSGEN_FIELDS}))
    return Outcome(new, rec.state, new.state, True, value=True)


def ttl_for(rec: Record, now: float, ttl: int, probe_ttl: int) -> int:
    """docs/breaker-design.md#ttl-rules: TTL from the merged post-op record and the op's ``now``; never below 1."""
    if rec.state == "open":
        t = max(ttl, math.ceil(rec.open_until - now) + 60)
    elif rec.state == "half_open" and rec.half_open_probe_active:
        t = max(probe_ttl, math.ceil(rec.probe_lease_until - now) + 60)
    else:
        t = ttl
    return max(1, int(t))
