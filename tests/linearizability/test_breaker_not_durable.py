"""The breaker-store model and writes fewer replicas acknowledged than asked (``durable: false``,
docs/linearizability.md#not-durable-writes): applied exactly as observed, or lost in a failover.

Each OK case has an ILLEGAL twin, so the op cannot pass by being ignored; the acknowledged writes the
lost-writes audit counts leave such a write out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lin_events import ev

from pytest_cbchaos.breaker.checker_model import BreakerStoreModel
from pytest_cbchaos.breaker.lost_writes import acknowledged_writes
from pytest_cbchaos.history.ops import pair_events
from pytest_cbchaos.linearizability import Verdict, check_events

MODEL = BreakerStoreModel()
T = 1_000.0
OPENED = {"prev_state": "closed", "new_state": "open", "applied": True}
COUNTED = {"prev_state": "closed", "new_state": "closed", "applied": True}
STILL_CLOSED = {"prev_state": "closed", "new_state": "closed", "applied": False, "won": False}
STILL_OPEN = {"prev_state": "open", "new_state": "open", "applied": False, "won": False}


def failure(op_id: str, threshold: int = 1) -> dict:
    return {"op_id": op_id, "failure_threshold": threshold, "recovery_timeout": 60.0, "now_min": T}


def then_gate(first: dict, gate_out: dict) -> list[tuple]:
    """A failure answered ``first`` at T, then a gate at T+1 answered ``gate_out``."""
    return [(0, 0, "invoke", "record_failure", failure("f1"), "b"),
            (1, 0, "ok", "record_failure", {**first, "now": T}, "b"),
            (2, 1, "invoke", "gate", {"op_id": "g1", "lease_seconds": 1.0, "now_min": T + 1}, "b"),
            (3, 1, "ok", "gate", {**gate_out, "now": T + 1}, "b")]


def verdict(rows: list[tuple]) -> Verdict:
    return check_events(ev(rows), MODEL).verdict


def test_a_not_durable_write_may_be_lost() -> None:
    assert verdict(then_gate({**OPENED, "durable": False}, STILL_CLOSED)) is Verdict.OK


def test_the_same_write_acknowledged_cannot_be_lost() -> None:
    assert verdict(then_gate(OPENED, STILL_CLOSED)) is Verdict.ILLEGAL


def test_a_not_durable_write_may_have_stood() -> None:
    assert verdict(then_gate({**OPENED, "durable": False}, STILL_OPEN)) is Verdict.OK


def counted_twice(first: dict) -> list[tuple]:
    """Two failures (threshold 2); the second, acknowledged, opens: only if the first was applied."""
    return [(0, 0, "invoke", "record_failure", failure("f1", 2), "b"),
            (1, 0, "ok", "record_failure", {**first, "durable": False, "now": T}, "b"),
            (2, 0, "invoke", "record_failure", {**failure("f2", 2), "now_min": T + 1}, "b"),
            (3, 0, "ok", "record_failure", {**OPENED, "now": T + 1}, "b")]


def test_a_not_durable_write_whose_effect_is_observed_is_applied() -> None:
    assert verdict(counted_twice(COUNTED)) is Verdict.OK


def test_its_reply_is_still_checked_when_its_effect_is_observed() -> None:
    """Applied, the first failure cannot have opened at count 0 (threshold 2); lost, the second cannot open."""
    assert verdict(counted_twice(OPENED)) is Verdict.ILLEGAL


def test_the_lost_writes_audit_counts_only_acknowledged_writes() -> None:
    ops = pair_events(ev(then_gate({**OPENED, "durable": False}, STILL_CLOSED)))
    assert acknowledged_writes(ops) == []
    assert [o.f for o in acknowledged_writes(pair_events(ev(then_gate(OPENED, STILL_CLOSED))))] == ["record_failure"]


# -- the recorded history --------------------------------------------------------------------------
DATA = Path(__file__).parent / "data" / "breaker_sentinel_failover_not_durable.jsonl"


def recorded() -> list[dict[str, Any]]:
    """scenarios/breaker-sentinel-failover.yaml beside ten busy loops: 201 ops on one backend; after the
    failover the new primary had one replica of two, so 19 replies (t = 1.2..3.0 s) came back short of
    ``WAIT 2``; 3 of them wrote."""
    return [json.loads(line) for line in DATA.read_text().splitlines()]


def as_crashed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history as recorded before: each not-durable reply an ``info`` (no output, no end); the worker
    goes on as a new process."""
    out, renamed, fresh = [], {}, iter(range(1000, 10_000))
    for e in events:
        p = e["process"]
        e = {**e, "process": renamed.get(p, p)}
        if e["type"] == "ok" and e["value"].get("durable") is False:
            renamed[p] = next(fresh)
            e = {**e, "type": "info", "value": None, "error": ["not-durable", "fewer replicas acknowledged"]}
        out.append(e)
    return out


def with_read_after_last_release(events: list[dict[str, Any]], seen: dict[str, Any]) -> list[dict[str, Any]]:
    """A gate by a new process just after the last acknowledged probe release (it closed the breaker),
    answered ``seen``."""
    i, rel = max((i, e) for i, e in enumerate(events) if e["type"] == "ok" and e["f"] == "release_probe"
                 and e["value"].get("applied") and "durable" not in e["value"])
    now = rel["value"]["now"] + 0.001
    gate = [{"type": "invoke", "process": 99, "f": "gate", "key": rel["key"], "time": rel["time"] + 1,
             "value": {"op_id": "planted", "lease_seconds": 0.5, "now_min": now}},
            {"type": "ok", "process": 99, "f": "gate", "key": rel["key"], "time": rel["time"] + 2,
             "value": {**seen, "now": now}}]
    out = events[:i + 1] + gate + events[i + 1:]
    return [{**e, "index": n} for n, e in enumerate(out)]


def test_recorded_history_with_not_durable_writes_is_decided_ok() -> None:
    events = recorded()
    assert sum(e["type"] == "ok" and e["value"].get("durable") is False for e in events) == 19
    assert check_events(events, MODEL, max_steps=2_000, timeout=None).verdict is Verdict.OK


def test_recorded_as_crashed_ops_gets_the_same_verdict() -> None:
    """The same history recorded as crashed ops (any time, any output): the weaker encoding agrees. It was
    UNKNOWN after 100 000 steps before the crashed-op reductions (docs/linearizability-design.md#search)."""
    assert check_events(as_crashed(recorded()), MODEL, max_steps=5_000, timeout=None).verdict is Verdict.OK


def test_a_planted_lost_write_in_the_recorded_history_is_illegal() -> None:
    """The acknowledged release lost: the probe is still held just after it."""
    busy = {"prev_state": "half_open", "new_state": "half_open", "applied": False, "won": False}
    assert check_events(with_read_after_last_release(recorded(), busy), MODEL).verdict is Verdict.ILLEGAL
    assert check_events(with_read_after_last_release(recorded(), STILL_CLOSED), MODEL).verdict is Verdict.OK
