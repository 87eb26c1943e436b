"""The breaker-store invariant checks are pure functions: each catches its mutant history."""

from __future__ import annotations

from pytest_cbchaos.scenario.targets import breaker_checks as bc


def gate(t, w, *, won=False, prev="open", new=None, now=0.0, until=0.0, lease=None, reason="", admitted=None, label="open->half_open"):
    reply = {"_prev_state": prev, "_new_state": new or prev, "_now": now, "open_until": until, "_reason": reason,
             "_label": label if won else "", "_applied": won}
    if lease is not None:
        reply["probe_lease_until"] = lease
    return {"t_ms": t, "worker": w, "op": "gate", "ok": True, "reply": reply, "won": won, "token": f"{w}:{t}" if won else None,
            "admitted": won or prev == "closed" if admitted is None else admitted}


def release(t, w, token):
    return {"t_ms": t, "worker": w, "op": "release", "ok": True, "token": token,
            "reply": {"_prev_state": "half_open", "_new_state": "closed", "_applied": True}}


def test_single_probe_owner_ok_and_mutant() -> None:
    ok = [gate(1, "a", won=True, now=10.0, lease=10.5), release(2, "a", "a:1"),
          gate(3, "b", won=True, now=10.2, lease=10.7, prev="half_open", label="half_open_probe_claimed")]
    assert bc.single_probe_owner(ok, 0.5).verdict == "ok"
    mutant = [gate(1, "a", won=True, now=10.0, lease=10.5), gate(2, "b", won=True, now=10.1, lease=10.6)]
    r = bc.single_probe_owner(mutant, 0.5)
    assert r.verdict == "violated" and r.counterexample["second_claim"]["worker"] == "b"
    reclaim = [gate(1, "a", won=True, now=10.0, lease=10.5), gate(2, "b", won=True, now=10.6, lease=11.1,
                                                                  prev="half_open", label="half_open_probe_reclaimed")]
    assert bc.single_probe_owner(reclaim, 0.5).verdict == "ok"


def test_single_probe_owner_judges_in_the_stores_order() -> None:
    """A's claim and release both finish while B's gate is delayed on the network; B's gate,
    invoked first, wins after them. In invoke order B's claim looks live when A claims."""
    delayed = gate(0, "b", won=True, now=10.3, lease=10.8, prev="half_open", label="half_open_probe_claimed")
    ops = [delayed, gate(1, "a", won=True, now=10.0, lease=10.5),
           {**release(2, "a", "a:1"), "reply": {**release(2, "a", "a:1")["reply"], "_now": 10.1}}]
    assert bc.single_probe_owner(ops, 0.5).verdict == "ok"
    overlap = [{**delayed, "reply": {**delayed["reply"], "_now": 10.05, "probe_lease_until": 10.55}}, *ops[1:]]
    assert bc.single_probe_owner(overlap, 0.5).verdict == "violated"


def test_single_probe_owner_dates_a_duplicate_claim_by_its_lease() -> None:
    """B's claim reply was lost; the resend, answered ``_duplicate`` at 10.9, reports the claim
    made at 10.3 (lease 10.8). A claims at 10.0 and releases at 10.1: no overlap."""
    dup = gate(0, "b", won=True, now=10.9, lease=10.8, prev="half_open", label="half_open_probe_claimed")
    dup["reply"]["_duplicate"] = True
    a = gate(1, "a", won=True, now=10.0, lease=10.5)
    rel = {**release(2, "a", "a:1"), "reply": {**release(2, "a", "a:1")["reply"], "_now": 10.1}}
    assert bc.single_probe_owner([dup, a, rel], 0.5).verdict == "ok"
    assert bc.in_server_order([dup, a, rel], 0.5) == [a, rel, dup]


def test_single_probe_owner_catches_a_real_blind_claim() -> None:
    """``BlindClaimStore``: both gates read OPEN before either writes (a barrier forces it), so
    both win; the correct store lets one win."""
    import threading

    from pytest_cbchaos.breaker.store import InMemoryStore
    from pytest_cbchaos.testing.breaker_mutants import BlindClaimStore

    def run(store, barrier=None) -> list[dict]:
        store.atomic_record_failure("b", 1, 0.001, now=100.0)
        ops: list[dict] = []

        def claim(w: str, now: float) -> None:
            c = store.try_transition_and_claim_probe("b", now, lease_seconds=0.5)
            ops.append({"t_ms": now, "worker": w, "op": "gate", "ok": True, "won": bool(c.won), "token": c.token,
                        "reply": {**dict(c.record), "_label": c.label}, "admitted": bool(c.admitted)})
        if barrier is not None:
            store.pause_hook = lambda: barrier.wait(timeout=10)
        ts = [threading.Thread(target=claim, args=(w, 101.0 + i / 100)) for i, w in enumerate("ab")]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return ops

    ok = run(InMemoryStore(probe_lease_seconds=0.5))
    assert sum(o["won"] for o in ok) == 1 and bc.single_probe_owner(ok, 0.5).verdict == "ok"
    bad = run(BlindClaimStore(probe_lease_seconds=0.5), threading.Barrier(2))
    assert sum(o["won"] for o in bad) == 2
    r = bc.single_probe_owner(bad, 0.5)
    assert r.verdict == "violated" and "two live probe owners" in r.detail


def test_no_false_rejection() -> None:
    assert bc.no_false_rejection([gate(1, "a", prev="closed")]).verdict == "ok"
    assert bc.no_false_rejection([gate(1, "a", prev="closed", admitted=False)]).verdict == "violated"


def test_open_until_monotone() -> None:
    assert bc.open_until_monotone([gate(1, "a", until=5.0), gate(2, "b", until=6.0)]).verdict == "ok"
    r = bc.open_until_monotone([gate(1, "a", until=6.0), gate(2, "b", until=5.0)])
    assert r.verdict == "violated" and "decreased" in r.detail
    # overlapping ops may be applied in either order: not a violation
    overlapping = [{**gate(1, "a", until=6.0), "end_ms": 3}, {**gate(2, "b", until=5.0), "end_ms": 4}]
    assert bc.open_until_monotone(overlapping).verdict == "ok"


def test_failure_extends_cooldown() -> None:
    good = {"t_ms": 1, "worker": "a", "op": "failure", "ok": True,
            "reply": {"_prev_state": "open", "_now": 10.0, "open_until": 70.0}}
    bad = {**good, "reply": {"_prev_state": "open", "_now": 10.0, "open_until": 11.0}}
    assert bc.failure_extends_cooldown([good], 60).verdict == "ok"
    assert bc.failure_extends_cooldown([bad], 60).verdict == "violated"


def test_threshold_trips() -> None:
    op = {"t_ms": 1, "worker": "a", "op": "failure", "ok": True,
          "reply": {"_prev_state": "closed", "_new_state": "open", "failure_count": 3}}
    assert bc.threshold_trips([op], 3).verdict == "ok"
    stuck = {**op, "reply": {**op["reply"], "_new_state": "closed"}}
    assert bc.threshold_trips([stuck], 3).verdict == "violated"


def test_cooldown_consistent() -> None:
    assert bc.cooldown_consistent([gate(1, "a", now=5.0, until=6.0, reason="cooldown")]).verdict == "ok"
    assert bc.cooldown_consistent([gate(1, "a", now=7.0, until=6.0, reason="cooldown")]).verdict == "violated"
    assert bc.cooldown_consistent([gate(1, "a", won=True, now=5.0, until=6.0)]).verdict == "violated"


def test_wedge_bound() -> None:
    assert bc.wedge_bound(0.6, 0.5, 0.02).verdict == "ok"
    assert bc.wedge_bound(5.0, 0.5, 0.02).verdict == "violated"
    assert bc.wedge_bound(None, 0.5, 0.02).verdict == "skipped"
