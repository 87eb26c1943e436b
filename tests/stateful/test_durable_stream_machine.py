"""The durable-stream state machine (docs/stream-design.md#harness) on the real in-process relay against
real redis-server, the producer and consumer links each behind a kit proxy; and stream mutants it
must catch."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from pytest_cbchaos.stateful.durable_stream import (SINGLE_EVENT_CALLS, DurableStreamViolation, ProxiedRedisEnv,
                                                    durable_stream_machine)
from pytest_cbchaos.stream import StreamConfig
from pytest_cbchaos.testing import stream_mutants as M
from tests.stream.sched_lag import PathLag, wait_within_async

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
    consumer_proxy = cbchaos_toxiproxy.create_proxy("redis-consumer",
                                                    f"{cbchaos_redis_proc.host}:{cbchaos_redis_proc.port}")
    try:
        yield ProxiedRedisEnv(cbchaos_redis_proc, cbchaos_redis_proxy, consumer_proxy, cbchaos_faults,
                              StreamConfig.ci())
    finally:
        cbchaos_faults.heal_all()
        consumer_proxy.close()


def assert_caught(machine: Any, pattern: str) -> None:
    """The mutant is caught when an example raised a violation matching ``pattern``. A found example's
    replay can take another path (when a consumer connected relative to a terminal is timing), and
    Hypothesis then reports that as flaky; the violation an example raised is judged, not the replay."""
    with pytest.raises((DurableStreamViolation, Flaky)) as ei:
        run_state_machine_as_test(machine, settings=MUTANT_SETTINGS)
    assert any(re.search(pattern, v) for v in machine.violations_seen), (machine.violations_seen, ei.value)


def test_machine_passes_on_real_relay(stream_env: ProxiedRedisEnv) -> None:
    run_state_machine_as_test(durable_stream_machine(stream_env), settings=PASS_SETTINGS)


SINGLE_EVENT_RULES = {"turn", "lose_reply", "await"}


def _single_event_env(env: ProxiedRedisEnv) -> ProxiedRedisEnv:
    """``max_batch=1``: every content event and every terminal is a call of its own."""
    env.config = env.config.replace(max_batch=1)
    return env


def test_machine_single_event_lost_replies_pass_on_real_relay(stream_env: ProxiedRedisEnv) -> None:
    """A lost reply of a lone terminal, a control event or a content event: the resend answers DUP."""
    machine = durable_stream_machine(_single_event_env(stream_env), enabled=SINGLE_EVENT_RULES, conversations=("a",),
                                     serial_turns=True)
    lost: set[str] = set()

    class Counting(machine):  # type: ignore[misc, valid-type]
        def teardown(self) -> None:
            lost.update(shape for shape, _mid, _step in self.lost_replies)
            super().teardown()
    run_state_machine_as_test(Counting, settings=MUTANT_SETTINGS)
    assert lost == set(SINGLE_EVENT_CALLS), f"the draws lost replies of {sorted(lost)} only"


def test_machine_catches_m14_single_event_resend(stream_env: ProxiedRedisEnv) -> None:
    """M14: the resend of an applied single-event call answers CONFLICT/FENCED: the relay stops (INV-14),
    and a stopped non-terminal call leaves the turn to the reaper (INV-17)."""
    machine = durable_stream_machine(_single_event_env(stream_env), enabled=SINGLE_EVENT_RULES, conversations=("a",),
                                     serial_turns=True, store_class=M.M14SingleEventResendStore)
    assert_caught(machine, "INV-14")


def test_machine_catches_m3_stop_on_any_terminal(stream_env: ProxiedRedisEnv) -> None:
    """M3: a replay that stops at an older message's terminal never reaches its target (INV-6/8)."""
    machine = durable_stream_machine(stream_env, enabled={"turn", "await", "connect"}, conversations=("a",),
                                     read_loop_class=M.M3StopOnAnyTerminal)
    assert_caught(machine, "INV-6")


def test_machine_catches_m13_no_fencing(stream_env: ProxiedRedisEnv) -> None:
    """M13: a fenced producer's append is written anyway: two terminals (INV-16/3)."""
    machine = durable_stream_machine(stream_env, enabled={"turn", "fence"}, conversations=("a",),
                                     store_class=M.M13NoFencingStore)
    assert_caught(machine, "INV-3|INV-11|INV-16")


class M5Relay:
    """Adapter: the machine's relay interface over M5's plain ``XADD *`` producer (retried on a reset)."""

    def __init__(self, store: Any, config: Any = None, *, history: Any = None) -> None:
        self.prod = M.M5PlainXaddProducer(store)
        self.emissions = self.prod.emissions

    async def start(self, conversation_id: str, source: Any, *, model_id: str, message_id: str, **_: Any) -> Any:
        import asyncio
        import uuid

        from pytest_cbchaos.stream.envelope import encode_payload, kind_class
        from pytest_cbchaos.stream.relay import TurnHandle

        sid = uuid.uuid4().hex
        events = [("turn_started", "control", encode_payload("turn_started", {"model_id": model_id, "source": "m5",
                                                                              "previous_message_id": None}))]
        events += [(ev.kind, kind_class(ev.kind), encode_payload(ev.kind, ev.payload)) for ev in source.events]
        task = asyncio.get_running_loop().create_task(self.prod.write(conversation_id, message_id, sid, events))
        return TurnHandle(conversation_id, message_id, "0" * 16, 1, sid, task)

    async def cancel(self, conversation_id: str, message_id: str) -> str:
        return "IGNORED"

    async def aclose(self) -> None:
        return None


def test_machine_catches_m5_plain_xadd(stream_env: ProxiedRedisEnv) -> None:
    """M5: entries appended with plain ``XADD *`` (retried on a reset) outside the scripts: ids are
    not seqs, no meta nor record, duplicates on a lost reply (INV-10/12/14/2)."""
    machine = durable_stream_machine(stream_env, enabled={"turn", "fault_producer", "heal", "await"},
                                     conversations=("a",), relay_class=M5Relay)
    assert_caught(machine, "INV-10|INV-12|INV-14|INV-2")


def test_rule_set_does_not_depend_on_timing() -> None:
    """Item 6 (Hypothesis health under load): which rules are enabled must not depend on whether a
    consumer task or a turn task is still running (timing), or a replay draws differently and
    Hypothesis raises FlakyStrategyDefinition. Every precondition, evaluated with the same model
    but every task running vs every task done, gives the same answer."""
    import inspect
    from types import SimpleNamespace

    from hypothesis.stateful import RULE_MARKER

    from pytest_cbchaos.stateful.durable_stream import RULES, DurableStreamMachineBase

    def state(running: bool) -> SimpleNamespace:
        task = SimpleNamespace(done=lambda: not running)
        consumer = SimpleNamespace(running=running, task=task, got_terminal=False)
        turn = SimpleNamespace(live=running, handle=SimpleNamespace(task=task))
        return SimpleNamespace(enabled=frozenset(RULES), consumers=[consumer], turns=[turn], faults={})

    rules = {name: getattr(fn, RULE_MARKER) for name, fn in inspect.getmembers(DurableStreamMachineBase)
             if getattr(fn, RULE_MARKER, None) is not None}
    assert "reconnect" in rules
    differ = [name for name, r in rules.items()
              if [bool(p(state(True))) for p in r.preconditions] != [bool(p(state(False))) for p in r.preconditions]]
    assert differ == [], f"preconditions that read task state: {differ}"


def _one_held_turn(env: ProxiedRedisEnv, **kw: Any) -> Any:
    """A machine built by hand (no Hypothesis): one conversation, one complete turn held at its gate."""
    m = durable_stream_machine(env, enabled={"turn", "await"}, conversations=("a",), **kw)()
    m.start_turn("a", "complete", deltas=3, where=1, stage="session", hold=True, control=False)
    return m


def test_fenced_after_a_lapsed_lease_is_excused(stream_env: ProxiedRedisEnv) -> None:
    """The machine's loop is paused (no renewal can run) until Redis has expired the held turn's lease;
    the resumed producer is fenced, by design: INV-14 must not call that a healthy-link stop."""
    import time

    import redis as sync_redis

    stream_env.config = stream_env.config.replace(lease_ttl_s=0.75, lease_renew_s=0.25, reaper_interval_s=0.25)
    m = _one_held_turn(stream_env)
    try:
        proc = stream_env.proc
        admin = sync_redis.Redis(host=proc.host, port=proc.port, password=proc.password, socket_timeout=2.0)
        lease_key = m.astore.keys("a")[4]
        deadline = time.monotonic() + 10 * m.cfg.lease_ttl_s
        while admin.exists(lease_key) and time.monotonic() < deadline:  # the loop stays paused meanwhile
            time.sleep(0.05)
        admin.close()
        assert time.monotonic() < deadline, "the lease never expired while the loop was paused"
        m.await_turn("a")
        t = m.turns[0]
        assert t.result.stop_reason == "FENCED" and t.lapsed, t.result
        assert not m.leases.judge(t.handle.stream_id).intact
    finally:
        m.teardown()


def test_fenced_with_an_intact_lease_is_caught(stream_env: ProxiedRedisEnv) -> None:
    """M14FenceHolderStore: renew answers FENCED to the lease holder, 0.2 s into a 30 s lease: INV-14."""
    import asyncio

    stream_env.config = stream_env.config.replace(lease_ttl_s=30.0, lease_renew_s=0.2)
    m = _one_held_turn(stream_env, store_class=M.M14FenceHolderStore)
    try:
        t = m.turns[0]
        m._run(asyncio.wait({t.handle.task}, timeout=5))  # held at its gate: the first renewal fences it
        m._run(m._await_turn(t))
        with pytest.raises(DurableStreamViolation, match="INV-14.*the lease was intact"):
            m._check_outcome(t)
    finally:
        m._heal()
        m._run(m._shutdown(), timeout=20)
        m.loop.close()


# -- renewal cadence (docs/stream-machine.md#renewal-cadence) ----------------------------------------
@contextmanager
def _renewing_turn(env: ProxiedRedisEnv, **kw: Any) -> Iterator[Any]:
    """One held turn under a 0.75 s lease renewed every 0.25 s (the reaper looks every 0.25 s); the
    machine is shut down on the way out."""
    env.config = env.config.replace(lease_ttl_s=0.75, lease_renew_s=0.25, reaper_interval_s=0.25)
    m = _one_held_turn(env, **kw)
    try:
        yield m
    finally:
        m._heal()
        m._run(m._shutdown(), timeout=20)
        m.loop.close()


def _drive_until(m: Any, pred: Any, budget: float, what: str) -> None:
    """Run the machine's loop (the relay renews meanwhile) until ``pred``; ``budget`` plus the scheduling
    lag measured meanwhile (tests/stream/sched_lag.py)."""
    m._run(wait_within_async(pred, budget, PathLag([os.getpid(), m.env.proc.pid]), what),
           timeout=budget + m.step_timeout_s)


def _owes_a_renewal(m: Any) -> bool:
    """A gap up to now is already late beyond the observed lag: it stays late whatever follows."""
    return bool(m.leases.cadence(m.turns[0].handle.stream_id, until=m.leases.clock()))


def _judge_end(m: Any) -> None:
    t = m.turns[0]
    m._run(m._await_turn(t))
    m._check_outcome(t)


def test_a_relay_that_never_renews_is_caught_though_its_lease_lapsed(stream_env: ProxiedRedisEnv) -> None:
    """M14NeverRenewRelay: the lease lapses because nobody renews it, the reaper closes the turn, the
    released producer is fenced; the lapse does not excuse it: INV-14 lease renewal."""
    with _renewing_turn(stream_env, relay_class=M.M14NeverRenewRelay) as m:
        async def reaped() -> bool:
            rec = await m.astore.record("a", m.turns[0].mid)
            return rec is not None and rec["status"] == "interrupted" and _owes_a_renewal(m)
        _drive_until(m, reaped, m.cfg.lease_ttl_s + 2 * m.cfg.reaper_interval_s + 2.0,
                     "the reaper closing the unrenewed turn, owed a renewal beyond the observed lag")
        with pytest.raises(DurableStreamViolation, match=r"INV-14 lease renewal: m1: no lease renewal sent for"):
            _judge_end(m)
        assert m.turns[0].result.stop_reason == "FENCED", m.turns[0].result


def test_a_relay_renewing_at_three_times_its_interval_is_caught(stream_env: ProxiedRedisEnv) -> None:
    """M14SlowRenewRelay: a renewal 0.75 s after the last for a 0.25 s interval: INV-14 lease renewal,
    whether or not the lease lapsed meanwhile."""
    with _renewing_turn(stream_env, relay_class=M.M14SlowRenewRelay) as m:
        sid = m.turns[0].handle.stream_id
        _drive_until(m, lambda: bool(m.leases.renewals.get(sid)) and _owes_a_renewal(m), 8.0,
                     "a renewal, and a gap late beyond the observed lag")
        with pytest.raises(DurableStreamViolation, match=r"INV-14 lease renewal: m1: no lease renewal sent for"):
            _judge_end(m)


def test_a_held_turn_renews_on_time(stream_env: ProxiedRedisEnv) -> None:
    """The real relay, held through 8 renewals: every gap within lease_renew_s plus the observed lag."""
    with _renewing_turn(stream_env) as m:
        sid = m.turns[0].handle.stream_id
        _drive_until(m, lambda: len(m.leases.renewals.get(sid, [])) >= 8, 8 * m.cfg.lease_renew_s + 2.0,
                     "8 renewals")
        _judge_end(m)
        # the 8 renewals were sent while the turn was held, so each ends a judged gap; the gap after the
        # last one exists only if its answer came before the terminal's send (load decides that order)
        sent = {a.sent for a in m.leases.renewals[sid]}
        assert m.turns[0].result.stop_reason is None
        assert sum(end in sent for _, end in m.leases.gaps(sid)) >= 8, m.leases.gaps(sid)
