"""The concurrent breaker-store test: catches three non-atomic mutants (their races forced by a
Lockstep schedule, never timing luck), passes InMemoryStore,
handles SIGKILLed process workers, and passes RedisStore on real Redis through the proxy with
faults over >= 10,000 operations."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from pytest_cbchaos.breaker.conformance.window import Lockstep, Scheduled, tiny_switch_interval
from pytest_cbchaos.breaker.store import InMemoryStore
from pytest_cbchaos.linearizability import LinearizabilityViolation
from pytest_cbchaos.stateful import (ConcurrentConfig, ConcurrentProgram, ProxyFaults, Round,
                                     RunStats, concurrent_store_test, find_violation, run_and_check)
from pytest_cbchaos.stateful.store_commands import Command
from pytest_cbchaos.testing.breaker_mutants import BlindClaimStore, StateOnlyCasStore, UnlockedKernelStore

from _store_factories import RedisFactory

MUTANT_SETTINGS = settings(max_examples=100, deadline=None, database=None, derandomize=True,
                           suppress_health_check=list(HealthCheck))
# shrinking replays every candidate; one mutant shows it, the others only need to be found
NO_SHRINK = settings(MUTANT_SETTINGS, phases=[Phase.explicit, Phase.reuse, Phase.generate])


def _shared(store):
    return lambda worker, clock: store


def _mutant_cfg(tmp_path: Path, **kw) -> ConcurrentConfig:
    base = dict(workers=4, backends=1, max_rounds=2, max_cmds=4, faults=(), artifacts_dir=tmp_path,
                lease=3600.0)
    base.update(kw)
    return ConcurrentConfig(**base)


@pytest.mark.parametrize("make,weights,shrink", [
    (lambda: UnlockedKernelStore(probe_lease_seconds=3600.0),
     {"record_failure": 8, "get_state": 3}, False),
    (lambda: StateOnlyCasStore(probe_lease_seconds=3600.0),
     {"gate": 6, "force_open": 4, "record_failure": 3}, False),
    (lambda: BlindClaimStore(probe_lease_seconds=3600.0),
     {"gate": 8, "force_open": 4, "record_failure": 2, "record_success": 0, "release_probe": 0,
      "renew_probe": 0, "reset": 0, "get_state": 1}, True),
], ids=["unlocked-kernel", "cas-state-only", "blind-probe-claim"])
def test_concurrent_machine_catches_mutant(tmp_path: Path, make, weights, shrink) -> None:
    extra = dict(workers=2, max_rounds=1, max_cmds=2, max_prefix=2) if shrink else {}
    sched = Lockstep()  # ops in lockstep; windowed ones all read before any writes: the races are forced
    store = make()
    store.pause_hook = sched
    # time stands still (force_open(0) opens an elapsed cooldown): every replay decides the same way
    cfg = _mutant_cfg(tmp_path, command_weights=weights, window=sched, scripted_time=1_800_000_000.0,
                      time_step=0.0, **extra)
    test = concurrent_store_test(lambda worker, clock: Scheduled(store, sched, worker), cfg,
                                 settings=MUTANT_SETTINGS if shrink else NO_SHRINK)
    with tiny_switch_interval(), pytest.raises(LinearizabilityViolation) as ei:
        test()
    violation = find_violation(ei.value)
    assert violation is not None, f"no LinearizabilityViolation in {ei.value!r}"
    assert sched.races >= 1
    artifacts = violation.artifacts
    assert Path(artifacts["timeline"]).exists() and Path(artifacts["history"]).exists()
    assert "first unplaceable op" in str(violation)
    if shrink:  # the reported program is small
        assert violation.result is not None and len(violation.result.ops) <= 12
        assert "second probe owner admitted while a probe is in flight [CB-3, second-probe-owner]" in str(violation)
        for name in ("results", "timeline"):  # the class is in results.json and the HTML timeline too
            assert "second probe owner admitted" in Path(artifacts[name]).read_text()
    # shrinking keeps the first failure and the final (shrunk) one, not one directory per candidate
    assert {p.name for p in tmp_path.iterdir()} <= {"failure-first", "failure-final"}


def test_lockstep_schedule_passes_a_correct_store(tmp_path: Path) -> None:
    """The schedule itself adds no violation: an atomic store (its ops never pause) under the same
    Lockstep, scripted clocks and weights as the mutants."""
    sched, store, stats = Lockstep(), InMemoryStore(probe_lease_seconds=3600.0), RunStats()
    cfg = _mutant_cfg(tmp_path, window=sched, scripted_time=1_800_000_000.0, time_step=0.0,
                      command_weights={"gate": 6, "force_open": 4, "record_failure": 3})
    test = concurrent_store_test(lambda worker, clock: Scheduled(store, sched, worker), cfg, stats=stats,
                                 settings=settings(NO_SHRINK, max_examples=30))
    with tiny_switch_interval():
        test()
    assert stats.examples >= 1 and stats.verdicts.get("illegal", 0) == 0


def test_inmemory_store_is_linearizable_with_skew_and_thread_kills(tmp_path: Path) -> None:
    stats = RunStats()
    cfg = ConcurrentConfig(workers=4, backends=2, max_rounds=3, faults=("sigkill", "skew"),
                           fault_probability=0.5, artifacts_dir=tmp_path)
    store = InMemoryStore(probe_lease_seconds=3600.0)
    test = concurrent_store_test(_shared(store), cfg, stats=stats,
                                 settings=settings(max_examples=30, deadline=None,
                                                   suppress_health_check=list(HealthCheck)))
    with tiny_switch_interval():
        test()
    assert stats.examples >= 1 and stats.verdicts.get("illegal", 0) == 0


def _kill_program() -> ConcurrentProgram:
    fail = Command("record_failure", 0, {"failure_threshold": 2, "recovery_timeout": 0.001})
    gate = Command("gate", 0, {})
    from pytest_cbchaos.stateful.concurrent import FaultAction
    r0 = Round(((fail, gate, fail), (gate, fail), (fail, gate, gate)),
               (FaultAction("sigkill", 1, 1),))
    r1 = Round(((gate, Command("get_state", 0, {})), (fail, gate), (gate,)))
    return ConcurrentProgram((fail,), (r0, r1), seed=7)


def test_process_workers_on_real_redis_with_sigkill(tmp_path: Path, cbchaos_redis_proc,
                                                    cbchaos_redis_proxy) -> None:
    factory = RedisFactory(cbchaos_redis_proxy.listen_host, cbchaos_redis_proxy.listen_port,
                           cbchaos_redis_proc.password)
    cfg = ConcurrentConfig(workers=3, mode="processes", backends=1, artifacts_dir=tmp_path,
                           time_source="server")
    stats = RunStats()
    result = run_and_check(_kill_program(), factory, cfg, stats=stats)
    assert result.verdict.value == "ok"
    assert stats.crashed >= 1
    crashed = [op for op in result.ops if op.status == "info"]
    assert crashed and all(op.error for op in crashed)


def test_redis_store_linearizable_under_faults_10k_ops(tmp_path: Path, cbchaos_redis_proc,
                                                       cbchaos_redis_proxy, cbchaos_faults) -> None:
    # no resend backoff sleeps (~30 ms per failed op): the faults stay on for the round (docs/stateful.md)
    factory = RedisFactory(cbchaos_redis_proxy.listen_host, cbchaos_redis_proxy.listen_port,
                           cbchaos_redis_proc.password, resend_backoff=False)
    stats = RunStats()
    cfg = ConcurrentConfig(workers=4, backends=2, min_rounds=34, max_rounds=34, min_cmds=5,
                           max_cmds=5, max_prefix=2, rounds_per_key=3,
                           faults=("latency", "reset_peer", "down", "sigkill"),
                           fault_probability=0.25, time_source="server", artifacts_dir=tmp_path,
                           round_timeout=20.0)
    test = concurrent_store_test(factory, cfg, stats=stats,
                                 faults=lambda: ProxyFaults(cbchaos_faults, cbchaos_redis_proxy),
                                 settings=settings(max_examples=15, deadline=None, database=None,
                                                   derandomize=True, phases=[Phase.generate],
                                                   suppress_health_check=list(HealthCheck)))
    test()
    assert stats.verdicts.get("illegal", 0) == 0
    assert stats.ops >= 10_000, stats
    print(f"\nRedisStore concurrent: {stats.examples} examples, {stats.ops} ops, "
          f"{stats.crashed} crashed")
