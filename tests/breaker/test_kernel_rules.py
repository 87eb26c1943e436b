"""The kernel row by row (docs/breaker-design.md#state-machine) and the codec's edges
(docs/breaker-design.md#codec-and-corrupt-fields): exact post-op records, replies and TTLs, pure and fast."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from pytest_cbchaos.breaker import kernel as k
from pytest_cbchaos.breaker.record import (DEFAULT, MAX_COUNT, RECENT_OPS_MAX, STATES, Record, decode, decode_float,
                                           decode_int, decode_recent_ops, encode, encode_recent_ops, q6,
                                           record_from_dict, valid_op_id, valid_token)

NOW = 1_795_000_000.0
OP = "a" * 32
OP2 = "b" * 32


def oid(n: int) -> str:
    return f"{n:032x}"


def opened(until: float = NOW + 10, count: int = 5, **kw: object) -> Record:
    return DEFAULT.replace(state="open", failure_count=count, last_failure_time=NOW - 20, open_until=until, **kw)


def claimed(lease: float = NOW + 5, gen: int = 3, op: str = OP, **kw: object) -> Record:
    return DEFAULT.replace(state="half_open", failure_count=4, last_failure_time=NOW - 30, open_until=NOW - 1,
                           half_open_probe_active=True, probe_generation=gen, probe_token=f"{gen}:{op}",
                           probe_lease_until=lease, probe_anchor=NOW - 1, **kw)


# -- rule N and token currency -------------------------------------------------------------------

def test_rule_n_keeps_a_current_claim_and_empties_stale_probe_fields() -> None:
    assert k.normalize(claimed()) == claimed()
    stale = claimed().replace(probe_anchor=NOW - 2)  # another OPEN cycle
    assert k.normalize(stale) == stale.replace(probe_token="", probe_lease_until=0.0, probe_anchor=0.0)
    off = claimed().replace(half_open_probe_active=False)
    assert k.normalize(off).probe_token == "" and k.normalize(off).probe_lease_until == 0.0
    for field in ("probe_token", "probe_lease_until", "probe_anchor"):  # any one leftover field is cleared
        rec = opened().replace(**{field: claimed().__getattribute__(field)})
        assert k.normalize(rec) == opened()
    assert k.normalize(DEFAULT) is DEFAULT


def test_token_current_needs_every_condition() -> None:
    rec = claimed()
    assert k.token_current(rec, f"3:{OP}")
    assert not k.token_current(rec, f"2:{OP}")
    assert not k.token_current(rec.replace(state="open"), f"3:{OP}")
    assert not k.token_current(rec.replace(half_open_probe_active=False), f"3:{OP}")
    assert not k.token_current(rec.replace(probe_anchor=NOW), f"3:{OP}")
    assert not k.token_current(rec.replace(probe_token=""), "")


# -- gate ----------------------------------------------------------------------------------------

def test_g1_closed_admits_and_writes_nothing() -> None:
    out = k.gate(DEFAULT, NOW, OP, 5)
    assert out == k.Outcome(DEFAULT, "closed", "closed", False)


def test_g2_cooldown_rejects_until_open_until() -> None:
    out = k.gate(opened(), NOW + 9.999999, OP, 5)
    assert (out.applied, out.reason, out.won, out.record) == (False, "cooldown", False, opened())


def test_g3_claim_at_the_end_of_the_cooldown() -> None:
    rec = opened()
    out = k.gate(rec, NOW + 10, OP, 5)
    want = rec.replace(state="half_open", half_open_probe_active=True, probe_generation=1, probe_token=f"1:{OP}",
                       probe_lease_until=NOW + 15, probe_anchor=NOW + 10, recent_ops=((OP, "open", "half_open"),))
    assert out == k.Outcome(want, "open", "half_open", True, label=k.LABEL_OPEN, won=True)


def test_g4_free_slot_is_claimed() -> None:
    rec = claimed().replace(half_open_probe_active=False)
    out = k.gate(rec, NOW, OP2, 5)
    assert (out.won, out.label, out.applied, out.reason) == (True, k.LABEL_CLAIMED, True, "")
    assert out.record.probe_token == f"4:{OP2}" and out.record.probe_generation == 4
    assert out.record.probe_lease_until == NOW + 5 and out.record.probe_anchor == NOW - 1


def test_g5_held_slot_rejects_while_the_lease_runs_and_g6_reclaims_after() -> None:
    rec = claimed(lease=NOW + 5)
    busy = k.gate(rec, NOW + 4.999999, OP2, 5)
    assert (busy.applied, busy.reason, busy.won, busy.record) == (False, "probe_busy", False, rec)
    out = k.gate(rec, NOW + 5, OP2, 7)
    assert (out.won, out.label, out.applied) == (True, k.LABEL_RECLAIMED, True)
    assert out.record.probe_token == f"4:{OP2}" and out.record.probe_lease_until == NOW + 12
    assert not k.token_current(out.record, f"3:{OP}")  # the old token is dead


def test_g7_legacy_claim_gets_a_lease_and_is_rejected() -> None:
    legacy = DEFAULT.replace(state="half_open", half_open_probe_active=True, open_until=NOW - 3)
    out = k.gate(legacy, NOW, OP, 5)
    assert (out.applied, out.won, out.reason, out.label) == (True, False, "legacy_probe_leased", "")
    assert out.record == legacy.replace(probe_lease_until=NOW + 5, probe_anchor=NOW - 3,
                                        recent_ops=((OP, "half_open", "half_open"),))
    again = k.gate(out.record, NOW + 1, OP2, 5)
    assert again.reason == "probe_busy"


def test_a_resent_winning_gate_returns_the_same_claim() -> None:
    first = k.gate(opened(), NOW + 10, OP, 5)
    again = k.gate(first.record, NOW + 11, OP, 5)
    assert again == k.Outcome(first.record, "open", "half_open", False, "duplicate", label=k.LABEL_OPEN, won=True,
                              duplicate=True)
    g4 = k.gate(claimed().replace(half_open_probe_active=False), NOW, OP2, 5)
    assert k.gate(g4.record, NOW, OP2, 5).label == k.LABEL_CLAIMED
    # once the claim was superseded, the resend is a plain duplicate: it did not win
    taken = k.gate(first.record, NOW + 16, OP2, 5)
    late = k.gate(taken.record, NOW + 16, OP, 5)
    assert (late.duplicate, late.won, late.label, late.prev_state, late.new_state) == (True, False, "", "open",
                                                                                     "half_open")


def test_a_resent_losing_gate_on_a_lease_stamp_is_a_duplicate_that_did_not_win() -> None:
    legacy = DEFAULT.replace(state="half_open", half_open_probe_active=True, open_until=NOW - 3)
    stamped = k.gate(legacy, NOW, OP, 5).record
    again = k.gate(stamped, NOW, OP, 5)
    assert (again.duplicate, again.won, again.applied, again.reason) == (True, False, False, "duplicate")
    assert again.record == stamped  # the current record is answered


# -- failure -------------------------------------------------------------------------------------

def test_f1_counts_below_the_threshold() -> None:
    out = k.record_failure(DEFAULT.replace(failure_count=1), NOW + 0.0000004, OP, 3, 30)
    assert out.record == DEFAULT.replace(failure_count=2, last_failure_time=NOW, recent_ops=((OP, "closed", "closed"),))
    assert (out.applied, out.prev_state, out.new_state) == (True, "closed", "closed")


def test_f2_opens_at_the_threshold() -> None:
    out = k.record_failure(DEFAULT.replace(failure_count=2, open_until=NOW + 99), NOW, OP, 3, 30)
    assert out.record.state == "open" and out.record.failure_count == 3
    assert out.record.open_until == NOW + 99  # never shortened
    out = k.record_failure(DEFAULT.replace(failure_count=2), NOW, OP, 3, 30)
    assert out.record.open_until == NOW + 30 and out.new_state == "open"


def test_f3_f4_failure_in_open_extends_and_in_half_open_reopens() -> None:
    out = k.record_failure(opened(until=NOW + 10), NOW + 5, OP, 100, 30)
    assert out.record == opened(until=NOW + 35, count=6, recent_ops=((OP, "open", "open"),)).replace(
        last_failure_time=NOW + 5)
    out = k.record_failure(claimed(), NOW, OP2, 100, 30)
    assert out.record.state == "open" and out.record.failure_count == 5
    assert (out.record.probe_token, out.record.half_open_probe_active, out.record.probe_anchor) == ("", False, 0.0)


def test_failure_count_saturates() -> None:
    out = k.record_failure(DEFAULT.replace(failure_count=MAX_COUNT), NOW, OP, MAX_COUNT, 30)
    assert out.record.failure_count == MAX_COUNT
    assert k.increment_failure(DEFAULT.replace(failure_count=MAX_COUNT), NOW).value == MAX_COUNT
    assert k.record_failure(DEFAULT.replace(failure_count=MAX_COUNT - 1), NOW, OP, 10**10, 30).record.failure_count \
        == MAX_COUNT


# -- success -------------------------------------------------------------------------------------

def test_s1_expected_state_mismatch_writes_nothing() -> None:
    rec = DEFAULT.replace(failure_count=2)
    assert k.record_success(rec, NOW, OP, expected_state="open") == k.Outcome(rec, "closed", "closed", False,
                                                                                "expected_mismatch")
    assert k.record_success(rec, NOW, OP, expected_state="").applied  # "" means no expectation
    assert k.record_success(rec, NOW, OP, expected_state="closed").record.failure_count == 0


def test_s2_resets_the_count_only_when_there_is_one() -> None:
    assert k.record_success(DEFAULT, NOW, OP) == k.Outcome(DEFAULT, "closed", "closed", False)
    out = k.record_success(DEFAULT.replace(failure_count=4), NOW, OP)
    assert out.record == DEFAULT.replace(recent_ops=((OP, "closed", "closed"),)) and out.applied


def test_s3_s4_success_never_closes_open_and_only_the_owner_closes_half_open() -> None:
    assert k.record_success(opened(), NOW, OP) == k.Outcome(opened(), "open", "open", False, "guard_open")
    assert k.record_success(claimed(), NOW, OP2) == k.Outcome(claimed(), "half_open", "half_open", False,
                                                              "stale_token")
    loose = k.record_success(claimed(), NOW, OP2, strict=False)  # massgen conformance
    assert loose.record == DEFAULT.replace(last_failure_time=NOW - 30, open_until=NOW - 1, probe_generation=3,
                                           recent_ops=((OP2, "half_open", "closed"),))


# -- release and renew ---------------------------------------------------------------------------

def test_p1_to_p4_release_by_the_owner() -> None:
    tok = f"3:{OP}"
    ok = k.release_probe(claimed(), NOW, OP2, tok, "success", 30)
    assert ok.record == DEFAULT.replace(last_failure_time=NOW - 30, open_until=NOW - 1, probe_generation=3,
                                        recent_ops=((OP2, "half_open", "closed"),))
    bad = k.release_probe(claimed(), NOW, OP2, tok, "failure", 30).record
    assert (bad.state, bad.failure_count, bad.last_failure_time, bad.open_until) == ("open", 5, NOW, NOW + 30)
    assert bad.probe_token == "" and not bad.half_open_probe_active
    ab = k.release_probe(claimed(), NOW, OP2, tok, "abort", 30).record
    assert (ab.state, ab.failure_count, ab.last_failure_time, ab.open_until) == ("open", 4, NOW - 30, NOW + 30)
    assert ab.probe_token == "" and ab.probe_lease_until == 0.0
    free = k.release_probe(claimed(), NOW, OP2, tok, "free", 30).record
    assert free == claimed().replace(half_open_probe_active=False, probe_token="", probe_lease_until=0.0,
                                     probe_anchor=0.0, recent_ops=((OP2, "half_open", "half_open"),))
    with pytest.raises(ValueError, match=r"outcome must be one of \('success', 'failure', 'abort', 'free'\), got 'x'"):
        k.release_probe(claimed(), NOW, OP2, tok, "x", 30)


def test_release_never_shortens_the_cooldown() -> None:
    rec = claimed().replace(open_until=NOW + 100, probe_anchor=NOW + 100)
    for outcome in ("failure", "abort"):
        assert k.release_probe(rec, NOW, OP2, f"3:{OP}", outcome, 30).record.open_until == NOW + 100


def test_p5_stale_token_does_nothing() -> None:
    assert k.release_probe(claimed(), NOW, OP2, f"2:{OP}", "success", 30) == k.Outcome(
        claimed(), "half_open", "half_open", False, "stale_token")
    assert k.release_probe(opened(), NOW, OP2, f"3:{OP}", "success", 30).reason == "not_half_open"
    assert k.renew_probe(claimed(), NOW, f"2:{OP}", 5) == k.Outcome(claimed(), "half_open", "half_open", False,
                                                                    "stale_token", value=False)
    assert k.renew_probe(DEFAULT, NOW, f"3:{OP}", 5).reason == "not_half_open"


def test_renew_extends_the_lease_never_shortens_it_and_is_not_recorded() -> None:
    rec = claimed(lease=NOW + 5)
    out = k.renew_probe(rec, NOW + 2, f"3:{OP}", 5)
    assert out == k.Outcome(rec.replace(probe_lease_until=NOW + 7), "half_open", "half_open", True, value=True)
    same = k.renew_probe(rec, NOW, f"3:{OP}", 5)
    assert same == k.Outcome(rec, "half_open", "half_open", False, value=True)
    assert k.renew_probe(rec, NOW, f"3:{OP}", 1).record.probe_lease_until == NOW + 5


# -- force_open, reset, increment, cas -----------------------------------------------------------

def test_x1_force_open_merges_and_only_writes_when_it_opens_or_extends() -> None:
    out = k.force_open(claimed(), NOW, OP2, 60)
    assert out.record.state == "open" and out.record.open_until == NOW + 60 and out.record.probe_token == ""
    assert out.record.last_failure_time == NOW and out.applied and out.prev_state == "half_open"
    later = opened(until=NOW + 100).replace(last_failure_time=NOW + 50)
    assert k.force_open(later, NOW, OP2, 60) == k.Outcome(later, "open", "open", False)
    assert k.force_open(opened(until=NOW + 60), NOW, OP2, 60).applied is False  # equal: nothing to extend
    ext = k.force_open(later, NOW, OP2, 200).record
    assert ext.open_until == NOW + 200 and ext.last_failure_time == NOW + 50  # max-merged


def test_x2_reset_keeps_generation_and_recent_ops() -> None:
    rec = claimed(gen=9, recent_ops=((OP, "open", "half_open"),))
    out = k.reset(rec, NOW, OP2)
    assert out.record == DEFAULT.replace(probe_generation=9, recent_ops=((OP, "open", "half_open"),
                                                                         (OP2, "half_open", "closed")))
    assert out.applied and k.reset(DEFAULT, NOW, OP2).applied  # always writes


def test_increment_failure_counts_without_a_transition() -> None:
    out = k.increment_failure(opened(count=2), NOW)
    assert out == k.Outcome(opened(count=3), "open", "open", True, value=3)


def test_cas_state_compares_state_and_fields() -> None:
    rec = DEFAULT.replace(failure_count=2, last_failure_time=NOW)
    upd = {"state": "open", "open_until": NOW + 5, "probe_token": "ignored"}
    out = k.cas_state(rec, "closed", upd)
    assert out == k.Outcome(rec.replace(state="open", open_until=NOW + 5), "closed", "open", True, value=True)
    assert k.cas_state(rec, "open", upd) == k.Outcome(rec, "closed", "closed", False, "expected_mismatch", value=False)
    assert k.cas_state(rec, "bogus", upd).value is False
    assert k.cas_state(rec, "closed", upd, {"failure_count": "2", "last_failure_time": str(NOW)}).applied
    assert k.cas_state(rec, "closed", upd, {"failure_count": 3}).reason == "expected_mismatch"
    assert k.cas_state(rec, "closed", upd, {"failure_count": "x"}).value is False  # unparsable never matches
    assert k.cas_state(rec, "closed", upd, {"last_failure_time": "nope"}).value is False
    assert k.cas_state(rec, "closed", upd, {"half_open_probe_active": "False"}).applied
    assert k.cas_state(rec, "closed", upd, {"half_open_probe_active": True}).value is False
    assert k.cas_state(claimed(), "half_open", {}, {"half_open_probe_active": "True"}).applied
    assert k.cas_state(claimed(), "half_open", {}, {"probe_token": f"3:{OP}"}).applied
    assert k.cas_state(claimed(), "half_open", {}, {"probe_token": "x"}).value is False
    assert k.cas_state(rec, "closed", rec).record == rec  # a Record as updates writes nothing


# -- replies, duplicates, recent_ops ------------------------------------------------------------

def test_every_recorded_op_is_exactly_once() -> None:
    ops = [lambda r, o: k.gate(r, NOW + 10, o, 5), lambda r, o: k.record_failure(r, NOW, o, 1, 30),
           lambda r, o: k.record_success(r, NOW, o), lambda r, o: k.force_open(r, NOW, o, 60),
           lambda r, o: k.reset(r, NOW, o), lambda r, o: k.release_probe(r, NOW, o, f"3:{OP}", "free", 30)]
    for op in ops:
        for rec in (DEFAULT.replace(failure_count=1), opened(), claimed()):
            first = op(rec, OP2)
            again = op(first.record, OP2)
            if first.applied:
                assert again.duplicate and again.reason == "duplicate" and again.record == first.record
                assert (again.prev_state, again.new_state) == (first.prev_state, first.new_state)
                assert not again.applied


def test_recent_ops_keeps_the_newest_sixteen() -> None:
    rec = DEFAULT
    for n in range(RECENT_OPS_MAX + 3):
        rec = k.record_failure(rec, NOW, oid(n), 10**6, 30).record
    assert [o for o, _, _ in rec.recent_ops] == [oid(n) for n in range(3, RECENT_OPS_MAX + 3)]
    assert k.record_failure(rec, NOW, oid(2), 10**6, 30).applied  # forgotten: applied again
    assert k.record_failure(rec, NOW, oid(3), 10**6, 30).duplicate
    assert k._find(rec, None) is None


def test_reply_meta() -> None:
    out = k.gate(claimed().replace(half_open_probe_active=False), NOW, OP2, 5)
    assert out.meta(NOW, ("state",)) == {"_prev_state": "half_open", "_prev_was_half_open": True,
                                         "_new_state": "half_open", "_applied": True, "_now": NOW, "_reason": "",
                                         "_duplicate": False, "_corrupt": ["state"]}
    assert k.gate(DEFAULT, NOW, OP, 5).meta(NOW)["_prev_was_half_open"] is False


@given(st.sampled_from(STATES), st.floats(0, 1e4), st.floats(0, 1e4), st.integers(0, 3))
def test_open_until_never_decreases(state: str, until: float, dt: float, which: int) -> None:
    rec = claimed().replace(state=state, open_until=NOW + until, probe_anchor=NOW + until)
    now = NOW + dt
    out = [k.record_failure(rec, now, OP2, 1, 30), k.force_open(rec, now, OP2, 5),
           k.release_probe(rec, now, OP2, f"3:{OP}", "abort", 30), k.gate(rec, now, OP2, 5)][which]
    assert out.record.open_until >= rec.open_until


# -- TTL -----------------------------------------------------------------------------------------

def test_ttl_rules() -> None:
    assert k.ttl_for(opened(until=NOW + 100.2), NOW, 30, 10) == 161
    assert k.ttl_for(opened(until=NOW - 1000), NOW, 30, 10) == 30
    assert k.ttl_for(claimed(lease=NOW + 5.5), NOW, 30, 10) == 66
    assert k.ttl_for(claimed(lease=NOW - 1000), NOW, 30, 70) == 70
    assert k.ttl_for(claimed().replace(half_open_probe_active=False), NOW, 30, 70) == 30
    assert k.ttl_for(DEFAULT, NOW, 0, 70) == 1
    assert k.ttl_for(DEFAULT, NOW, 45, 70) == 45
    assert k.ttl_for(opened(until=NOW - 1000), NOW, -5, 10) == 1


# -- codec edges ---------------------------------------------------------------------------------

def test_q6_and_the_six_decimal_encoding() -> None:
    assert q6(1.0000004) == 1.0 and q6(1.0000006) == 1.000001
    enc = encode(claimed(recent_ops=((OP, "open", "half_open"),)))
    assert enc["probe_lease_until"] == "%.6f" % (NOW + 5) and enc["half_open_probe_active"] == "True"
    assert enc["recent_ops"] == f"{OP}=open>half_open" and enc["failure_count"] == "4"
    assert encode(DEFAULT)["half_open_probe_active"] == "False"
    assert decode(enc) == (claimed(recent_ops=((OP, "open", "half_open"),)), ())


def test_decode_handles_bytes_keys_unknown_fields_and_empty_input() -> None:
    assert decode(None) == (DEFAULT, ()) and decode({}) == (DEFAULT, ())
    assert decode({b"state": b"open", b"other": b"x", 7: b"y"}) == (DEFAULT.replace(state="open"), ())
    assert decode({b"\xff": b"open"}) == (DEFAULT, ())
    assert decode({"state": "OPEN", "failure_count": "x"}) == (DEFAULT, ("state", "failure_count"))
    assert decode({"probe_token": b"\xff"}) == (DEFAULT, ("probe_token",))


def test_int_and_float_limits() -> None:
    assert decode_int("2147483647") == MAX_COUNT and decode_int("2147483648") is None
    assert decode_int("10000000000") is None and decode_int("9999999999") is None and decode_int(5) is None
    assert decode_float("100000000000") == 1e11 and decode_float("100000000000.5") is None
    assert decode_float("1e11") == 1e11 and decode_float(b"2.5") == 2.5 and decode_float(2.5) is None


def test_recent_ops_codec() -> None:
    ops = tuple((oid(n), "open", "closed") for n in range(RECENT_OPS_MAX + 2))
    text = encode_recent_ops(ops)
    assert decode_recent_ops(text) == (ops[-RECENT_OPS_MAX:], False)
    assert decode_recent_ops("") == ((), False) and decode_recent_ops(f"  {OP}=open>closed  ") == (
        ((OP, "open", "closed"),), False)
    assert decode_recent_ops(f"junk {OP}=open>closed") == (((OP, "open", "closed"),), True)
    assert decode_recent_ops(f"{OP}=open>closed\t{OP2}=closed>open") == ((), True)  # one space only, as in Lua
    assert decode_recent_ops(b"\xff") == ((), True) and decode_recent_ops(None) == ((), True)
    rec, corrupt = decode({"recent_ops": f"{OP}=open>shut {OP2}=closed>open"})
    assert rec.recent_ops == ((OP2, "closed", "open"),) and corrupt == ("recent_ops",)


def test_record_dict_round_trip_and_validators() -> None:
    rec = claimed(recent_ops=((OP, "open", "half_open"),))
    assert record_from_dict(rec.to_dict()) == rec
    assert record_from_dict(dict(rec.to_dict(), recent_ops=[[OP, "open", "half_open"]])) == rec
    assert record_from_dict({"state": "open"}) == DEFAULT.replace(state="open")
    assert valid_op_id(OP) and not valid_op_id(OP.upper()) and not valid_op_id(OP + "a") and not valid_op_id(5)
    assert valid_token(f"3:{OP}") and not valid_token(f"3:{OP[:-1]}") and not valid_token(None)
    assert valid_token(f"{'9' * 15}:{OP}") and not valid_token(f"{'9' * 16}:{OP}")
    assert math.isclose(rec.to_dict()["probe_lease_until"], NOW + 5)
