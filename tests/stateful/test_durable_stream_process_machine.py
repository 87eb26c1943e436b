"""The durable-stream state machine over the child-process harness (``cbchaos_stream``): relay
SIGKILL/SIGSTOP/SIGTERM, redis-server restarts (AOF always), faults on all three links, a fault
held exactly before the terminal call, SSE consumers; and the mutants it must catch."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from pytest_cbchaos.stateful.durable_stream import DurableStreamViolation
from pytest_cbchaos.stateful.durable_stream_process import durable_stream_process_machine

pytestmark = [pytest.mark.timeout(300), pytest.mark.requires_real_redis, pytest.mark.slow]

# every step drives real processes: few examples, bounded steps
PASS_SETTINGS = settings(settings.default, max_examples=min(settings.default.max_examples, 6),
                         stateful_step_count=12, deadline=None, suppress_health_check=list(HealthCheck))
# a mutant run stops at its first failing example: no shrinking
MUTANT_SETTINGS = settings(PASS_SETTINGS, max_examples=15, stateful_step_count=8, derandomize=True,
                           database=None, phases=(Phase.explicit, Phase.generate))


class FirstViolation(BaseException):
    """Carries a machine's first violation out of Hypothesis. Hypothesis passes a BaseException through
    instead of replaying the failing example: for a mutant run the replay (real processes again, seconds)
    proves nothing more, since a replay that no longer fails would count as caught all the same."""

    def __init__(self, violation: DurableStreamViolation) -> None:
        super().__init__(str(violation))
        self.violation = violation


def stop_at_first_violation(machine: type) -> type:
    """``machine`` (a class of its own, bound for this test) patched in place so that its first violation
    (rule, invariant or teardown) ends the run as a FirstViolation. In place, not a subclass: Hypothesis
    derives the derandomized examples from the class it is given, so they stay those of the plain machine."""
    first: list[FirstViolation] = []

    def carrying(method: Any) -> Any:
        def call(self: Any, *args: Any) -> Any:
            try:
                return method(self, *args)
            except DurableStreamViolation as exc:
                if not first:
                    first.append(FirstViolation(exc))
                raise first[0] from exc
        return call

    for name in ("_fail", "check_invariants", "teardown"):
        setattr(machine, name, carrying(getattr(machine, name)))
    judged_teardown = machine.teardown

    def teardown(self: Any) -> None:
        if first:  # the run already failed: teardown only cleans up, no turn is awaited and judged again
            for t in self.turns:
                t.ended = True
        judged_teardown(self)

    machine.teardown = teardown
    return machine


def assert_caught(machine: Any, pattern: str) -> None:
    """The machine must fail on the mutant, with a violation matching ``pattern``."""
    import re

    try:
        run_state_machine_as_test(stop_at_first_violation(machine), settings=MUTANT_SETTINGS)
    except FirstViolation as caught:
        assert re.search(pattern, str(caught.violation)), caught.violation
        return
    pytest.fail(f"the mutant was not caught (no violation matching {pattern!r})")


def test_process_machine_passes(cbchaos_stream: Any, cbchaos_faults: Any, cbchaos_stream_redis: Any) -> None:
    machine = durable_stream_process_machine(cbchaos_stream, cbchaos_faults, redis=cbchaos_stream_redis)
    run_state_machine_as_test(machine, settings=PASS_SETTINGS)


def test_process_machine_catches_m13_no_fencing(cbchaos_stream_factory: Any, cbchaos_faults: Any) -> None:
    """M13 in the child relay: a producer stopped past its lease and resumed writes after the
    reaper's terminal (INV-16/3)."""
    h = cbchaos_stream_factory(store_class="pytest_cbchaos.testing.stream_mutants:M13NoFencingStore")
    machine = durable_stream_process_machine(h, cbchaos_faults, enabled={"turn", "fence_relay"})
    assert_caught(machine, "INV-3|INV-11|INV-16")


def test_process_machine_catches_m7_no_reaper(cbchaos_stream_factory: Any, cbchaos_faults: Any) -> None:
    """M7 in the app child: a killed relay's message stays in_progress past T_orphan (INV-15)."""
    h = cbchaos_stream_factory(reaper_class="pytest_cbchaos.testing.stream_mutants:M7NoReaper")
    machine = durable_stream_process_machine(h, cbchaos_faults, enabled={"turn", "kill_relay", "await"})
    assert_caught(machine, "INV-15")
