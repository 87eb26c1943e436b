"""The stall-recovery state machine against real opencode + mock provider, and the mutant
runners it must catch (docs/recovery-design.md#invariants)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner
from pytest_cbchaos.recovery.attempt import CONSUMERS
from pytest_cbchaos.stateful.recovery_machine import FAULTS, InvariantViolation, recovery_machine
from pytest_cbchaos.testing.runner_mutants import MUTANTS
from tests.recovery.oc_env import OpencodeEnv

pytestmark = [pytest.mark.slow, pytest.mark.opencode, pytest.mark.timeout(240)]

# few examples, bounded steps: every step is a real turn against real opencode
MACHINE_SETTINGS = settings(max_examples=2, stateful_step_count=4, deadline=None, derandomize=True,
                            database=None, suppress_health_check=list(HealthCheck))
# faults cheap enough for the CI run; "kill" (a restart costs a cold start) is driven directly below
CHEAP = frozenset(FAULTS) - {"kill", "sigstop_held"}


@pytest.fixture
def oc(cbchaos_env: Any) -> Iterator[OpencodeEnv]:
    env = OpencodeEnv.of(cbchaos_env)
    env.clean()
    yield env
    env.runner_class = RecoveryRunner
    env.clean()
    assert CONSUMERS.live() == {}


def test_machine_passes_real_runner(oc: OpencodeEnv) -> None:
    run_state_machine_as_test(recovery_machine(oc, enabled=CHEAP), settings=MACHINE_SETTINGS)


# Each mutant with the machine rule (and arguments) that exposes it; the machine must fail with
# the named invariant. The rule is driven directly (one step, then the invariants) so a failing
# example is not replayed and shrunk against real opencode, which would cost minutes.
MUTANT_CASES = [
    ("M1", "budget_exhaustion", {"budget": 0}, "INV-3"),
    ("M2", "kill_mid_turn", {}, "INV-4"),
    ("M3", "subscribe_latency", {"ms": 3000}, "INV-10"),
    ("M5", "model_stall", {}, "INV-12"),
    ("M9", "model_stall", {}, "INV-13"),
    ("M4", "events_latency", {"ms": 700}, "INV-8"),
]


@pytest.mark.parametrize("name,rule,args,invariant", MUTANT_CASES, ids=[c[0] for c in MUTANT_CASES])
def test_machine_catches_mutant(oc: OpencodeEnv, name: str, rule: str, args: dict[str, Any],
                                invariant: str) -> None:
    oc.runner_class = MUTANTS[name]
    machine = recovery_machine(oc, enabled=FAULTS)()
    try:
        getattr(machine, rule)(**args)
        with pytest.raises(InvariantViolation, match=invariant):
            machine.last_turn_honest()
    finally:
        machine.teardown()


def test_real_runner_passes_the_mutant_steps(oc: OpencodeEnv) -> None:
    """Control for the mutant tests: the same cheap steps pass with the real runner (each distinct step
    once: M5 and M9 are exposed by the same model_stall step)."""
    machine = recovery_machine(oc, enabled=FAULTS)()
    steps = dict.fromkeys((rule, tuple(sorted(args.items()))) for _, rule, args, _ in MUTANT_CASES)
    try:
        for rule, args in steps:
            if rule == "kill_mid_turn":
                continue  # the same fault with the real runner: test_recovery_real.py::test_sigkill_mid_turn...
            getattr(machine, rule)(**dict(args))
            machine.last_turn_honest()
        machine.sigstop_held()  # INV-17: a held SIGSTOP is a stall, never unreachable
        machine.last_turn_honest()
    finally:
        machine.teardown()


def test_machine_accepts_user_runner_through_protocol(oc: OpencodeEnv) -> None:
    """A user's own runner plugs in through ``runner_factory`` (TurnRunner protocol)."""
    made: list[Any] = []

    def factory(**cfg: Any) -> RecoveryRunner:
        cfg.setdefault("stall_timeout", oc.stall_timeout)
        runner = RecoveryRunner(oc.target(), RecoveryConfig.for_tests(**cfg))
        made.append(runner)
        return runner

    machine = recovery_machine(oc, enabled={"normal"}, runner_factory=factory)
    run_state_machine_as_test(machine, settings=settings(MACHINE_SETTINGS, max_examples=1, stateful_step_count=1))
    assert made


def test_unknown_fault_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown recovery machine faults.*'nope'"):
        recovery_machine(object(), enabled={"nope"})  # type: ignore[arg-type]


def test_events_latency_keeps_one_stream(oc: OpencodeEnv) -> None:
    """INV-8 against real opencode: an events-plane latency toxic never costs a reconnect."""
    machine = recovery_machine(oc, enabled=FAULTS)()
    try:
        machine.events_latency(ms=700)
        machine.last_turn_honest()
        _, res, _ = machine.results[-1]
        assert res.attempts and all(a.sse_connections == 1 for a in res.attempts)
    finally:
        machine.teardown()
