"""CB-1..CB-27 store invariants on every store path, and each mutant caught by its guard."""

from __future__ import annotations

import threading

import pytest

from pytest_cbchaos.breaker import InMemoryStore
from pytest_cbchaos.breaker.conformance import (CHECKS, STORE_CHECKS, InvariantViolation, StoreTarget, check,
                                                memory_target, run_conformance)
from pytest_cbchaos.breaker.conformance.lost_updates import lost_update_violations
from pytest_cbchaos.testing.breaker_mutants import MUTANTS, mutant_target


@pytest.mark.parametrize("cb", STORE_CHECKS, ids=lambda c: f"CB-{c}")
def test_invariant_holds(store_target: StoreTarget, cb: int) -> None:
    check(store_target, cb)


_PAIRS = [(name, cb) for name, (_, ids) in MUTANTS.items() for cb in ids]


@pytest.mark.parametrize(("mutant", "cb"), _PAIRS, ids=[f"{m}-CB-{c}" for m, c in _PAIRS])
def test_mutant_is_caught(mutant: str, cb: int) -> None:
    with pytest.raises(InvariantViolation) as info:
        check(mutant_target(mutant), cb)
    assert info.value.cb == cb


def test_every_store_check_has_a_mutant() -> None:
    guarded = {cb for _, ids in MUTANTS.values() for cb in ids}
    missing = [cb for cb in STORE_CHECKS if cb not in guarded]
    assert not missing, f"store checks without a mutant: {missing}"


def test_third_party_store_gets_a_report_not_an_exception() -> None:
    rep = run_conformance(mutant_target("blind_force_open"))
    by_id = {r.cb: r for r in rep.results}
    assert by_id[8].status == "fail" and by_id[8].applicability == "E"
    assert by_id[16].status == "fail" and by_id[16].applicability == "M"
    assert by_id[24].status == "elsewhere"
    assert [r.cb for r in rep.enforced_failures()] == [8]
    assert {r.cb for r in rep.enforced_failures(strict=True)} == {8, 14, 16}
    assert rep.to_dict()["target"] == "mutant:blind_force_open"


def test_our_memory_store_passes_whole_report() -> None:
    rep = run_conformance(memory_target())
    assert not rep.failed, rep.failed
    assert {r.cb for r in rep.results} == set(CHECKS) == set(range(1, 28))


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(3)],
                         ids=["error", "kbint", "sysexit"])
def test_cb13_worker_exceptions_propagate(exc: BaseException) -> None:
    """CB-13 kit hygiene: a worker raising anything never turns into a pass."""

    class Exploding(InMemoryStore):
        calls = 0
        lock = threading.Lock()

        def try_transition_and_claim_probe(self, *a, **k):  # type: ignore[no-untyped-def]
            with self.lock:
                Exploding.calls += 1
                first = Exploding.calls == 1
            if first:
                raise exc
            return super().try_transition_and_claim_probe(*a, **k)

    target = StoreTarget("exploding", lambda **kw: Exploding(**{k: v for k, v in kw.items() if k != "key_prefix"}))
    with pytest.raises(type(exc)):
        check(target, 3)


def test_no_lost_updates(store_target: StoreTarget) -> None:
    """8 threads x K failures, all counted once (memory: 2 000 calls; the Redis paths: round trips)."""
    k = 250 if store_target.name == "memory" else 25
    assert lost_update_violations(store_target, n=8, k=k) == []


@pytest.mark.parametrize("mutant", ["unlocked_kernel", "blind_claim"])
def test_lost_update_check_catches_a_store_deciding_outside_its_lock(mutant: str) -> None:
    if mutant == "blind_claim":  # its failures are atomic: the check must *pass* it (no false alarm)
        assert lost_update_violations(mutant_target(mutant), n=8, k=200) == []
        return
    v = lost_update_violations(mutant_target(mutant), n=8, k=250)
    assert any("lost updates" in x for x in v), v
