"""The breaker-store model and resent ops answered ``_duplicate`` (docs/linearizability.md).

Such an op completed with a known output, but the reply's ``_now`` is the resend's: the op took
effect at an unknown server time between its invoke and the resend (``now_max``). Each OK case
has an ILLEGAL twin, so judging the op that way cannot pass them by accepting everything; a store
that really applies a resend twice stays ILLEGAL.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import redis
from lin_events import ev

from pytest_cbchaos.linearizability import Verdict, check_events
from pytest_cbchaos.breaker.checker_model import BreakerStoreModel
from pytest_cbchaos.linearizability.checker import prepare
from pytest_cbchaos.linearizability.search import ILLEGAL, PartitionSearch

MODEL = BreakerStoreModel()
T = 1_000.0
DATA = Path(__file__).parent / "data" / "breaker_resend_duplicate.jsonl"


def verdict(rows: list[tuple]) -> Verdict:
    return check_events(ev(rows), MODEL).verdict


def judged_at_resend(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history as the judge read it before: the resend's time taken as the op's exact time."""
    return [{**e, "value": {("now" if k == "now_max" else k): v for k, v in e["value"].items()}}
            if e["type"] == "ok" else e for e in events]


# -- the recorded false violation ----------------------------------------------------------------
def recorded() -> list[dict[str, Any]]:
    """The docs/scenarios.md example against RedisStore (reset_peer + pause), cut after the first
    unplaceable op: three ops answered ``_duplicate`` after 1.3-2 s of resends, the probe claim
    among them ran at about 236.37 (its lease lapses between two gates 12 ms apart)."""
    return [json.loads(line) for line in DATA.read_text().splitlines()]


def test_recorded_history_with_resent_ops_is_ok() -> None:
    events = recorded()
    assert sum("now_max" in e["value"] for e in events if e["type"] == "ok") == 3
    assert check_events(events, MODEL).verdict is Verdict.OK


def test_recorded_history_judged_at_the_resend_time_is_illegal() -> None:
    assert check_events(judged_at_resend(recorded()), MODEL).verdict is Verdict.ILLEGAL


# -- micro histories -----------------------------------------------------------------------------
def failure(rt: float, op_id: str) -> dict:
    return {"op_id": op_id, "failure_threshold": 1, "recovery_timeout": rt}


CLAIMED = {"prev_state": "open", "new_state": "half_open", "applied": True, "won": True}


def late_resend_history(resent: bool, gate_at: float = 1.5) -> list[tuple]:
    """A failure (cooldown 1 s) is applied at T, its reply lost; the resend, answered
    ``_duplicate``, returns at T+5. A gate at T+gate_at claims: legal only if the failure ran
    early, which its exact time (``resent=False``) rules out."""
    out = {"prev_state": "closed", "new_state": "open", "applied": True, ("now_max" if resent else "now"): T + 5}
    return [(0, 0, "invoke", "record_failure", {**failure(1.0, "f1"), "now_min": T}, "b"),
            (1, 1, "invoke", "gate", {"op_id": "g1", "lease_seconds": 30.0, "now_min": T + gate_at}, "b"),
            (2, 1, "ok", "gate", {**CLAIMED, "now": T + gate_at}, "b"),
            (3, 0, "ok", "record_failure", out, "b")]


def test_resent_failure_that_ran_at_its_invoke_is_ok() -> None:
    assert verdict(late_resend_history(resent=True)) is Verdict.OK


def test_same_failure_with_an_exact_late_time_is_illegal() -> None:
    assert verdict(late_resend_history(resent=False)) is Verdict.ILLEGAL


def test_resent_failure_cannot_explain_a_claim_inside_its_earliest_cooldown() -> None:
    """Ran at its invoke at the earliest, the cooldown lasts until T+1: a claim at T+0.5 is illegal."""
    assert verdict(late_resend_history(resent=True, gate_at=0.5)) is Verdict.ILLEGAL


def resent_claim_history(now_max: float) -> list[tuple]:
    """A claim (lease 0.5 s) is resent and answered ``_duplicate`` at ``now_max``; a gate at T+3
    finds the probe busy, one at T+3.2 reclaims it. Only a claim at T+2.5..T+2.7 fits both:
    strictly between the invoke, the cooldown's end and the resend time."""
    opened = {"prev_state": "closed", "new_state": "open", "applied": True, "now": T}
    busy = {"prev_state": "half_open", "new_state": "half_open", "applied": False, "won": False}
    return [(0, 0, "invoke", "record_failure", {**failure(0.001, "f1"), "now_min": T}, "b"),
            (1, 0, "ok", "record_failure", opened, "b"),
            (2, 1, "invoke", "gate", {"op_id": "g1", "lease_seconds": 0.5, "now_min": T + 0.01}, "b"),
            (3, 2, "invoke", "gate", {"op_id": "g2", "lease_seconds": 0.5, "now_min": T + 3}, "b"),
            (4, 2, "ok", "gate", {**busy, "now": T + 3}, "b"),
            (5, 2, "invoke", "gate", {"op_id": "g3", "lease_seconds": 0.5, "now_min": T + 3.2}, "b"),
            (6, 2, "ok", "gate", {"prev_state": "half_open", "new_state": "half_open", "applied": True,
                                  "won": True, "now": T + 3.2}, "b"),
            (7, 1, "ok", "gate", {**CLAIMED, "won": False, "now_max": now_max}, "b")]


def test_resent_claim_whose_lease_lapses_between_two_gates_is_ok() -> None:
    assert verdict(resent_claim_history(now_max=T + 10)) is Verdict.OK


def test_resent_claim_answered_before_it_could_have_run_is_illegal() -> None:
    """Answered at T+2, the claim ran by then: its lease lapsed by T+2.5, not busy at T+3."""
    assert verdict(resent_claim_history(now_max=T + 2)) is Verdict.ILLEGAL


def test_fast_model_alone_gives_the_false_violation() -> None:
    """Why partitions with resent ops are re-checked: replayed at its lower bound only, the claim's
    lease lapses long before the busy gate."""
    parts = prepare(check_events(ev(resent_claim_history(now_max=T + 10)), MODEL).ops, MODEL)
    assert PartitionSearch(parts["b"], MODEL).run(10_000) == ILLEGAL
    assert PartitionSearch(parts["b"], MODEL.confirm_model).run(10_000) != ILLEGAL


# -- a real double apply stays illegal -----------------------------------------------------------
class LoseFirstReply:
    """A redis client whose first script call runs on the server and then loses its reply."""

    def __init__(self, client: redis.Redis) -> None:
        self.client, self.lost = client, 0

    def execute_command(self, *args: Any, **kw: Any) -> Any:
        reply = self.client.execute_command(*args, **kw)
        if args[0] == "EVALSHA" and not self.lost:
            self.lost += 1
            raise redis.ConnectionError("Connection reset by peer (reply lost)")
        return reply

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def drive(store_cls: type, admin: redis.Redis) -> list[dict[str, Any]]:
    """Two failures (threshold 3) through ``store_cls``; the first one's reply is lost once."""
    from pytest_cbchaos.scenario.targets.breaker_store import observed

    store = store_cls(LoseFirstReply(admin), key_prefix=f"cbchaos:resend:{uuid.uuid4().hex}")
    rows: list[tuple] = []
    for p in range(2):
        op_id = uuid.uuid4().hex
        inp = {"op_id": op_id, "failure_threshold": 3, "recovery_timeout": 30.0, "now_min": float(admin.time()[0])}
        rows.append((2 * p, p, "invoke", "record_failure", inp, "b"))
        reply = store.atomic_record_failure("b", 3, 30.0, op_id=op_id)
        rows.append((2 * p + 1, p, "ok", "record_failure", observed("record_failure", reply), "b"))
    return ev(rows)


def test_correct_store_resend_is_answered_duplicate_and_ok(cbchaos_redis_admin: redis.Redis) -> None:
    from pytest_cbchaos.breaker.redis_store import RedisStore

    events = drive(RedisStore, cbchaos_redis_admin)
    assert "now_max" in events[1]["value"]
    assert check_events(events, MODEL).verdict is Verdict.OK


def test_store_that_applies_a_resend_twice_is_illegal(cbchaos_redis_admin: redis.Redis) -> None:
    """``FreshOpIdResendRedisStore`` resends under a new op id: the failure counts twice, so the
    second failure opens the breaker (threshold 3) where one apply each leaves it closed."""
    from pytest_cbchaos.testing.breaker_mutants import FreshOpIdResendRedisStore

    events = drive(FreshOpIdResendRedisStore, cbchaos_redis_admin)
    assert events[3]["value"]["new_state"] == "open"
    assert check_events(events, MODEL).verdict is Verdict.ILLEGAL


def superseded_claim_history(open_seen_at: float) -> list[tuple]:
    """Found by test_breaker_model_properties: a failure (cooldown 0.05 s) resent, answered at T+0.1;
    gates at ``open_seen_at`` see OPEN; a claim invoked at T+0.1 is resent and answered ``won: False``
    (a failure reopened the breaker after it, so the claim is no longer current); a gate at T+0.1
    sees the probe busy. Legal only if the failure ran in (T, T+0.05] and the claim at T+0.1: the
    claim must count as a winning gate for the failure's candidate times."""
    f1 = {"op_id": "f1", "failure_threshold": 1, "recovery_timeout": 0.05}
    gate = {"lease_seconds": 0.05}
    seen_open = {"prev_state": "open", "new_state": "open", "applied": False, "won": False, "now": open_seen_at}
    busy = {"prev_state": "half_open", "new_state": "half_open", "applied": False, "won": False, "now": T + 0.1}
    return [(0, 0, "invoke", "record_failure", {**f1, "now_min": T}, "b"),
            (1, 1, "invoke", "gate", {**gate, "op_id": "g2", "now_min": open_seen_at}, "b"),
            (2, 2, "invoke", "gate", {**gate, "op_id": "g3", "now_min": open_seen_at}, "b"),
            (3, 1, "ok", "gate", seen_open, "b"),
            (4, 2, "ok", "gate", seen_open, "b"),
            (5, 3, "invoke", "gate", {**gate, "op_id": "g4", "now_min": T + 0.1}, "b"),
            (6, 4, "invoke", "gate", {**gate, "op_id": "g5", "now_min": T + 0.1}, "b"),
            (7, 5, "invoke", "record_failure", {**f1, "op_id": "f6", "now_min": T + 0.1}, "b"),
            (8, 0, "ok", "record_failure", {"prev_state": "closed", "new_state": "open", "applied": True,
                                            "won": False, "now_max": T + 0.1}, "b"),
            (9, 4, "ok", "gate", busy, "b"),
            (10, 5, "ok", "record_failure", {"prev_state": "half_open", "new_state": "open", "applied": True,
                                             "won": False, "now": T + 0.1}, "b"),
            (11, 3, "ok", "gate", {**CLAIMED, "won": False, "now_max": T + 0.101}, "b")]


def test_resent_claim_undone_by_a_later_failure_still_bounds_the_cooldown() -> None:
    assert verdict(superseded_claim_history(open_seen_at=T + 0.05)) is Verdict.OK


def test_open_seen_when_the_superseded_claim_ran_is_illegal() -> None:
    """Seen OPEN at T+0.1, the cooldown had not ended by T+0.1: no claim, no busy probe then."""
    assert verdict(superseded_claim_history(open_seen_at=T + 0.1)) is Verdict.ILLEGAL


def crashed_claim_history(busy_at: float) -> list[tuple]:
    """Found by test_breaker_model_properties: a failure (cooldown 0.05 s) crashed after its invoke at T;
    a gate at T+0.05 sees OPEN; a claim invoked at T+0.1 crashed; gates at ``busy_at`` see the probe busy;
    one at T+0.15 reclaims (the lease lapsed). Legal only if the failure ran in (T, T+0.05]: the gates that
    saw HALF_OPEN bound the cooldown's end as a winning gate would."""
    gate = {"lease_seconds": 0.05}
    busy = {"prev_state": "half_open", "new_state": "half_open", "applied": False, "won": False, "now": busy_at}
    return [(0, 0, "invoke", "record_failure", {"op_id": "f1", "failure_threshold": 1, "recovery_timeout": 0.05,
                                                 "now_min": T}, "b"),
            (1, 1, "invoke", "gate", {**gate, "op_id": "g2", "now_min": T + 0.05}, "b"),
            (2, 1, "ok", "gate", {"prev_state": "open", "new_state": "open", "applied": False, "won": False,
                                  "now": T + 0.05}, "b"),
            (3, 2, "invoke", "gate", {**gate, "op_id": "g3", "now_min": T + 0.1}, "b"),
            (4, 3, "invoke", "gate", {**gate, "op_id": "g4", "now_min": busy_at}, "b"),
            (5, 4, "invoke", "gate", {**gate, "op_id": "g5", "now_min": busy_at}, "b"),
            (6, 3, "ok", "gate", busy, "b"),
            (7, 4, "ok", "gate", busy, "b"),
            (8, 5, "invoke", "gate", {**gate, "op_id": "g6", "now_min": T + 0.15}, "b"),
            (9, 5, "ok", "gate", {"prev_state": "half_open", "new_state": "half_open", "applied": True, "won": True,
                                  "now": T + 0.15}, "b")]


def test_crashed_claim_seen_busy_bounds_the_cooldown() -> None:
    assert verdict(crashed_claim_history(busy_at=T + 0.1)) is Verdict.OK


def test_busy_probe_seen_before_the_cooldown_could_end_is_illegal() -> None:
    """Seen OPEN at T+0.05, the failure ran after T: its cooldown lasts past T+0.05, no probe then."""
    assert verdict(crashed_claim_history(busy_at=T + 0.05)) is Verdict.ILLEGAL
