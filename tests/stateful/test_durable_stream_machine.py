"""The durable-stream state machine (spec durable-stream.md §5) on the real in-process relay against
real redis-server, the producer and consumer links each behind a kit proxy; and stream mutants it
must catch."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from pytest_cbchaos.fixtures import create_proxy
from pytest_cbchaos.stateful.durable_stream import (DurableStreamViolation, ProxiedRedisEnv,
                                                    durable_stream_machine)
from pytest_cbchaos.stream import StreamConfig
from pytest_cbchaos.testing import stream_mutants as M

pytestmark = [pytest.mark.timeout(300)]

# few examples, bounded steps: every step drives the real relay and real Redis
PASS_SETTINGS = settings(settings.default, max_examples=min(settings.default.max_examples, 6),
                         stateful_step_count=14, deadline=None,
                         suppress_health_check=list(HealthCheck))
# a mutant run stops at the first failing example: no shrinking (each step costs real I/O)
MUTANT_SETTINGS = settings(PASS_SETTINGS, max_examples=25, stateful_step_count=12, derandomize=True,
                           database=None, phases=(Phase.explicit, Phase.generate))


@pytest.fixture
def stream_env(cbchaos_redis_proc: Any, cbchaos_redis_proxy: Any, cbchaos_toxiproxy: Any,
               cbchaos_faults: Any) -> Iterator[ProxiedRedisEnv]:
    consumer_proxy = create_proxy(cbchaos_toxiproxy, "redis-consumer",
                                  f"{cbchaos_redis_proc.host}:{cbchaos_redis_proc.port}")
    try:
        yield ProxiedRedisEnv(cbchaos_redis_proc, cbchaos_redis_proxy, consumer_proxy, cbchaos_faults,
                              StreamConfig.ci())
    finally:
        cbchaos_faults.heal_all()
        try:
            consumer_proxy.delete()
        except Exception:
            pass
        consumer_proxy._cbchaos_lease.release()


def test_machine_passes_on_real_relay(stream_env: ProxiedRedisEnv) -> None:
    run_state_machine_as_test(durable_stream_machine(stream_env), settings=PASS_SETTINGS)


def test_machine_catches_m3_stop_on_any_terminal(stream_env: ProxiedRedisEnv) -> None:
    """M3: a replay that stops at an older message's terminal never reaches its target (INV-6/8)."""
    machine = durable_stream_machine(stream_env, enabled={"turn", "await", "connect"}, conversations=("a",),
                                     read_loop_class=M.M3StopOnAnyTerminal)
    with pytest.raises(DurableStreamViolation, match="INV-6"):
        run_state_machine_as_test(machine, settings=MUTANT_SETTINGS)


def test_machine_catches_m13_no_fencing(stream_env: ProxiedRedisEnv) -> None:
    """M13: a fenced producer's append is written anyway: two terminals (INV-16/3)."""
    machine = durable_stream_machine(stream_env, enabled={"turn", "fence"}, conversations=("a",),
                                     store_class=M.M13NoFencingStore)
    with pytest.raises(DurableStreamViolation, match="INV-3|INV-11|INV-16"):
        run_state_machine_as_test(machine, settings=MUTANT_SETTINGS)
