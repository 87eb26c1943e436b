"""massgen 0.1.97's Redis store under the kit (docs/adapters.md#massgen).

Three parts: (1) each defect class the kit reports is reproduced by a direct test against massgen's
own store (no kit check involved), so no finding is a false positive; (2) the conformance suite and
a survey of the store machine against it report the classes with minimal examples; (3) the kit's
parts that massgen cannot express are n/a with a reason, not errors. Skips when massgen is absent
(``pip install --no-deps 'massgen==0.1.97'``; ``scripts/setup`` installs it).
"""

from __future__ import annotations

import functools
import itertools
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_cbchaos.adapters import massgen_store as mg
from pytest_cbchaos.stateful.store_commands import Command

pytestmark = pytest.mark.skipif(mg.unavailable_reason() is not None, reason=str(mg.unavailable_reason()))

T0 = 1_800_000_000.0
R = 60.0
_names = itertools.count()


@pytest.fixture
def prefix(cbchaos_redis_admin: Any) -> Any:
    p = f"cbchaos-mg{next(_names)}"
    yield p
    for pattern in (f"{p}:*", "cbns1:*cb2*", "cbns2:*cb2*"):
        for k in cbchaos_redis_admin.scan_iter(pattern):
            cbchaos_redis_admin.delete(k)


@pytest.fixture
def adapter(cbchaos_redis_admin: Any, prefix: str) -> mg.MassgenStoreAdapter:
    return mg.massgen_store(cbchaos_redis_admin, key_prefix=prefix)


def _trip(a: mg.MassgenStoreAdapter, b: str, now: float = T0) -> None:
    for _ in range(3):
        a.atomic_record_failure(b, 3, R, now=now)


# ---- (1) each class reproduced directly on massgen's store ---------------------------------------

def test_direct_non_owner_success_closes_half_open(adapter: mg.MassgenStoreAdapter) -> None:
    _trip(adapter, "b")
    won, _, _ = adapter.store.try_transition_and_claim_probe("b", T0 + R + 1, R)
    assert won
    adapter.store.atomic_record_success("b")  # someone else's call, admitted earlier, succeeds
    assert adapter.store.get_state("b")["state"] == "closed"


def test_direct_abandoned_probe_is_never_reclaimed(adapter: mg.MassgenStoreAdapter) -> None:
    _trip(adapter, "b")
    assert adapter.store.try_transition_and_claim_probe("b", T0 + R + 1, R)[0]
    # the owner died; a day later nobody can probe
    assert adapter.store.try_transition_and_claim_probe("b", T0 + R + 86_400, R)[0] is False


def test_direct_non_extending_force_open_writes(adapter: mg.MassgenStoreAdapter) -> None:
    adapter.force_open("b", 600, now=T0)
    before = adapter.store.get_state("b")
    adapter.force_open("b", 10, now=T0 + 1)  # massgen's breaker: read, max-merge, cas_state
    after = adapter.store.get_state("b")
    assert after["open_until"] == before["open_until"]
    assert after["last_failure_time"] > before["last_failure_time"]


def test_direct_ttl_zero_is_accepted_and_deletes_the_record(cbchaos_redis_admin: Any, prefix: str) -> None:
    store = mg.load_cb_store().RedisStore(cbchaos_redis_admin, ttl=0, key_prefix=prefix)
    for _ in range(5):
        store.atomic_record_failure("b", 3, R)
    assert store.get_state("b")["state"] == "closed"  # EXPIRE key 0 deleted the OPEN record


def test_direct_flag_spelling_read_two_ways(cbchaos_redis_admin: Any, adapter: mg.MassgenStoreAdapter) -> None:
    _trip(adapter, "b")
    assert adapter.store.try_transition_and_claim_probe("b", T0 + R + 1, R)[0]
    cbchaos_redis_admin.hset(adapter.key("b"), "half_open_probe_active", "false")
    assert adapter.store.get_state("b")["half_open_probe_active"] is False  # Python: free
    assert adapter.store.try_transition_and_claim_probe("b", T0 + R + 2, R)[0] is False  # Lua: busy


def test_direct_corrupt_field_crashes(cbchaos_redis_admin: Any, adapter: mg.MassgenStoreAdapter) -> None:
    adapter.atomic_record_failure("b", 100, R, now=T0)
    cbchaos_redis_admin.hset(adapter.key("b"), "failure_count", "x")
    with pytest.raises(ValueError):
        adapter.store.get_state("b")


def test_direct_stranger_abort_reopens(adapter: mg.MassgenStoreAdapter) -> None:
    _trip(adapter, "b")
    assert adapter.store.try_transition_and_claim_probe("b", T0 + R + 1, R)[0]
    # another caller's probe "terminated abnormally" path (LLMCircuitBreaker.call_with_retry)
    assert adapter.store.cas_state("b", "half_open", {"state": "open", "open_until": T0 + R + 2,
                                                      "half_open_probe_active": False})
    assert adapter.store.get_state("b")["state"] == "open"


def test_direct_reset_is_read_then_write(adapter: mg.MassgenStoreAdapter) -> None:
    """LLMCircuitBreaker.reset: get_state, then set_state(defaults); a trip in between is erased
    and the reset reports closed -> closed (no transition event)."""
    prev = adapter.store.get_state("b")["state"]
    _trip(adapter, "b")  # another process trips between the read and the write
    adapter.store.set_state("b", dict(mg.load_cb_store().DEFAULT_CIRCUIT_BREAKER_STATE))
    assert prev == "closed" and adapter.store.get_state("b")["state"] == "closed"


def test_direct_success_inside_reset_window(adapter: mg.MassgenStoreAdapter) -> None:
    """A success closes HALF_OPEN between the breaker reset's read and its write: the reset then
    reports half_open -> closed over a record that was already closed (CB-25, reset-not-atomic)."""
    _trip(adapter, "b")
    assert adapter.store.try_transition_and_claim_probe("b", T0 + R + 1, R)[0]
    prev = adapter.store.get_state("b")["state"]  # LLMCircuitBreaker.reset reads
    closed = adapter.store.atomic_record_success("b", "half_open")  # another caller's success
    overwritten = adapter.store.get_state("b")["state"]
    adapter.store.set_state("b", dict(mg.load_cb_store().DEFAULT_CIRCUIT_BREAKER_STATE))  # reset writes
    assert (prev, closed["_prev_state"], closed["state"], overwritten) == ("half_open", "half_open", "closed", "closed")


def _cmd(op: str, **args: Any) -> Command:
    return Command(op, 0, args)


def success_inside_reset_history(client: Any, prefix: str) -> Any:
    """The 18-op program of a test_concurrent failure run on massgen's store one op at a time in a
    forced order, recorded as the concurrent runner records it: in round 1, worker 2's success runs
    inside worker 0's reset (the adapter's ``pause_hook``, between the reset's read and its write),
    after worker 1's gate opened HALF_OPEN. Scripted clock, 2 ms per reading."""
    from pytest_cbchaos.history.recorder import Recorder
    from pytest_cbchaos.stateful.concurrent_worker import run_commands

    rec, clock = Recorder(3), SimpleNamespace(time=functools.partial(next, itertools.count(T0, 0.002)))
    stores = [mg.massgen_store(client, key_prefix=prefix) for _ in range(3)]
    seq, backends = [0, 10_000_000, 20_000_000], [f"{prefix}:00000423:0:0"]

    def run(w: int, *cmds: Any) -> None:
        seq[w] = run_commands(stores[w], rec, w, backends, list(cmds), clock=clock, lease=3600.0,
                              time_source="client", seq0=seq[w], salt=0x423, tokens={})

    success = _cmd("record_success", expected_state="half_open")
    force0, reset = _cmd("force_open", open_for_seconds=0.0), _cmd("reset")
    run(0, _cmd("get_state"), force0, _cmd("record_success", expected_state="closed"), reset,
        _cmd("record_success", expected_state=None))  # the sequential prefix
    run(2, reset)  # round 0, one op at a time; it ends OPEN
    run(0, _cmd("record_failure", failure_threshold=2, recovery_timeout=0.001), _cmd("get_state"),
        _cmd("get_state"), success)
    run(1, force0, success)
    run(0, _cmd("get_state"))  # round 1
    run(1, _cmd("gate"))  # OPEN -> HALF_OPEN
    stores[0].pause_hook = lambda: run(2, success)  # HALF_OPEN -> CLOSED inside the reset
    run(0, reset)
    run(1, reset, reset)
    rec.close()
    return rec.history()


def test_concurrent_success_inside_reset_is_reset_not_atomic(cbchaos_redis_admin: Any, prefix: str) -> None:
    """The forced history fails as test_concurrent's did (first unplaceable op: the success, in
    CLOSED); its class names the root cause, the reset's stale reply, not the generic
    wrong-transition the longest prefix's state gives."""
    from pytest_cbchaos.linearizability import Verdict
    from pytest_cbchaos.stateful import check_history

    res = check_history(success_inside_reset_history(cbchaos_redis_admin, prefix))
    assert res.verdict is Verdict.ILLEGAL
    fu = res.counterexample["first_unplaceable"]
    assert fu["describe"].startswith("record_success[") and "'prev_state': 'half_open'" in fu["describe"]
    assert fu["state"] == "closed failures=0"
    bug = fu["bug_class"]
    assert bug["id"] == "reset-not-atomic", bug
    assert bug["describe"].startswith("reset[") and bug["state"] == "closed failures=0"


# ---- the adapter's composed replies say what the store did ------------------------------------------

def test_force_open_gave_up_replies_the_record_its_last_cas_refused(cbchaos_redis_admin: Any,
                                                                     adapter: mg.MassgenStoreAdapter) -> None:
    """Every read is stale by its CAS (another writer flips the state in between): massgen gives up
    after 5 attempts. The reply is one moment (the last CAS's), not the first read's state paired
    with a later one's (closed -> half_open, a transition nobody made)."""
    flips = ["half_open", "closed"] * 3

    def flip() -> None:
        cbchaos_redis_admin.hset(adapter.key("b"), "state", flips.pop(0))

    adapter.pause_hook = flip
    d = adapter.force_open("b", 600, now=T0)
    assert len(flips) == 1  # five attempts
    assert (d["_prev_state"], d["_new_state"], d["_applied"]) == ("half_open", "half_open", False)
    assert d["state"] == adapter.store.get_state("b")["state"] == "half_open"


# ---- (2) the kit finds them: conformance + store machine survey, one report -----------------------

def massgen_target(client: Any, prefix: str) -> Any:
    from pytest_cbchaos.breaker.conformance import StoreTarget

    def make(**kw: Any) -> mg.MassgenStoreAdapter:
        kw.setdefault("key_prefix", prefix)  # CB-2 passes its own two prefixes
        return mg.massgen_store(client, **kw)

    def ttl_of(st: mg.MassgenStoreAdapter, b: str) -> float | None:
        v = client.ttl(st.key(b))
        return None if v is None or v < 0 else float(v)

    return StoreTarget("massgen-0.1.97", make, raw_set=lambda st, b, f: client.hset(st.key(b), mapping=f),
                       ttl_of=ttl_of, keys=lambda: [k.decode() for k in client.scan_iter(f"{prefix}:*")],
                       third_party=True)


#: what the conformance suite must report for massgen (each reproduced by a direct test above)
CONFORMANCE_FAILS = {8, 11, 18, 20, 21, 22, 25}


def test_conformance(cbchaos_redis_admin: Any, prefix: str) -> None:
    from pytest_cbchaos.breaker.conformance import run_conformance

    rep = run_conformance(massgen_target(cbchaos_redis_admin, prefix))
    by = {r.cb: r for r in rep.results}
    assert {r.cb for r in rep.failed} == CONFORMANCE_FAILS, "\n".join(f"{r.cb} {r.detail}" for r in rep.results)
    assert by[17].status == "n/a" and by[17].detail == "n/a: no probe tokens"
    assert all("KeyError" not in r.detail for r in rep.results)
    assert {f.klass.id for f in rep.findings()} == {f"cb-{n}" for n in CONFORMANCE_FAILS}


def test_survey_finds_every_class(cbchaos_redis_admin: Any, prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The acceptance run: one survey (store machine) plus the conformance report, printed."""
    from pytest_cbchaos.breaker.conformance import run_conformance
    from pytest_cbchaos.stateful import store_machine
    from pytest_cbchaos.stateful.survey import run_survey

    machine = store_machine(lambda: mg.massgen_store(cbchaos_redis_admin, key_prefix=prefix), name="MassgenMachine")
    rep = run_survey(machine)
    conf = run_conformance(massgen_target(cbchaos_redis_admin, prefix))
    findings = rep.findings + conf.findings()
    with capsys.disabled():
        print("\n" + rep.format() + "\n" + "\n".join(f.format() for f in conf.findings()))
    assert not rep.exhausted
    assert rep.findings, "the store machine found nothing"
    assert set(rep.classes) <= {"non-owner-closed", "non-owner-resolved-probe", "abandoned-probe-wedge", "noop-wrote"}
    for f in rep.findings:
        assert f.example and f.klass.message in f.format()
    assert len({f.klass.id for f in findings}) >= 5


def test_concurrent(cbchaos_redis_admin: Any, prefix: str, tmp_path: Any) -> None:
    """The concurrent test against massgen (threads, one adapter per worker on one client): any
    violation it reports carries a class the direct tests reproduce (one Hypothesis cannot replay, a
    thread race, arrives wrapped in FlakyFailure)."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.errors import FlakyFailure

    from pytest_cbchaos.linearizability import LinearizabilityViolation
    from pytest_cbchaos.stateful import ConcurrentConfig, concurrent_store_test, find_violation

    cfg = ConcurrentConfig(workers=3, backends=1, max_rounds=2, max_cmds=4, faults=(), key_prefix=prefix,
                           artifacts_dir=tmp_path, capabilities=mg.MassgenStoreAdapter.capabilities,
                           command_weights={"gate": 6, "record_success": 4, "force_open": 2})
    assert cfg.weights()["release_probe"] == 0 and cfg.weights()["renew_probe"] == 0
    test = concurrent_store_test(lambda worker, clock: mg.massgen_store(cbchaos_redis_admin, key_prefix=prefix),
                                 cfg, settings=settings(max_examples=25, deadline=None, database=None,
                                                        phases=[Phase.explicit, Phase.generate],
                                                        suppress_health_check=list(HealthCheck)))
    try:
        test()
    except (LinearizabilityViolation, FlakyFailure) as exc:
        found = find_violation(exc)
        assert found is not None, repr(exc)
        print(f"\nconcurrent: {str(found).splitlines()[0][:300]}")
        bug = found.result.counterexample["first_unplaceable"]["bug_class"]
        assert bug and bug["id"] in ACCEPTED, str(found)


#: the classes the direct tests reproduce, that the concurrent test may report
ACCEPTED = {"non-owner-closed", "noop-wrote", "abandoned-probe-wedge", "reset-not-atomic"}
