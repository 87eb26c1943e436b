"""The durable-stream state machine over the child-process harness (docs/stream-design.md#harness).

Where :mod:`.durable_stream` drives an in-process relay, this machine drives
:class:`~pytest_cbchaos.stream.harness.StreamHarness`: the relay is a real process, so its rules can
SIGKILL it (orphans: INV-15), SIGSTOP it past its lease and resume it (fencing: INV-16), SIGTERM it
(INV-17), restart redis-server under it (AOF ``always``: INV-24), fault any of the three links
(``redis-producer``, ``redis-consumer``, ``stream-http``), hold the terminal call and fault it
(INV-4/14), and follow turns with SSE consumers through ``stream-http`` at arbitrary cursors. After
every step :class:`~.stream_judge.StreamJudge` judges log, records, deliveries and the producer's
emissions; at teardown every fault is healed, every turn ends (orphans through the app's reaper
within ``T_orphan``), every consumer reaches its target's terminal within ``T_live``, and the run is
judged with every message finished.

One harness serves many examples (starting two child processes costs seconds): each example uses
conversations of its own, and the relay is restarted whenever a rule left it dead or paused::

    Machine = durable_stream_process_machine(harness, faults, redis=server)
    hypothesis.stateful.run_state_machine_as_test(Machine, settings=...)
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pytest_cbchaos.stream import StreamStore
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.client import StreamLost, StreamReset, StreamSuperseded, StreamTruncated, StreamUnavailable
from pytest_cbchaos.stream.harness import BackgroundConsumer, HarnessError, StreamHarness
from pytest_cbchaos.stream.scripted import OUTCOMES, TurnScript
from pytest_cbchaos.stream.sources import STAGES
from pytest_cbchaos.waiting import WaitTimeout, bounded, wait_until

from .binding import bind_machine
from .durable_stream import DurableStreamViolation
from .link_faults import LINK_FAULTS, arm_link_fault, heal_links
from .cursors import pick_start
from .stream_judge import StreamJudge

PROCESS_RULES = ("turn", "release", "await", "cancel", "kill_relay", "fence_relay", "terminate_relay",
                 "restart_redis", "fault_link", "heal", "fault_terminal", "connect")
LINKS = ("redis-producer", "redis-consumer", "stream-http")
#: consumer endings that excuse a missing terminal (a transport outcome, never a turn outcome)
EXCUSED = (StreamTruncated, StreamLost, StreamReset, StreamUnavailable, StreamSuperseded)


@dataclass
class PTurn:
    conv: str
    mid: str
    script: TurnScript
    relay_gen: int
    held: bool = False
    ended: bool = False
    disturbed: bool = False  # a producer-side fault or a Redis restart overlapped it
    orphaned: bool = False  # its relay process was killed or stopped past the lease
    cancelled: bool = False
    start_failed: bool = False


class SSEConsumer(NamedTuple):
    conv: str
    consumer: BackgroundConsumer
    past_terminal: bool  # started at or after its finished target's terminal: a 204 is expected


class DurableStreamProcessMachineBase(RuleBasedStateMachine):
    harness: StreamHarness
    faults: Any
    redis: Any = None  # a RedisServer with a restartable process, for restart_redis
    enabled: frozenset[str] = frozenset(PROCESS_RULES)

    def __init__(self) -> None:
        super().__init__()
        self.h = self.harness
        self.cfg = self.h.config
        self.tag = secrets.token_hex(3)
        self.convs = (f"{self.tag}a", f"{self.tag}b")
        self.turns: list[PTurn] = []
        self.consumers: list[SSEConsumer] = []
        self.link_faults: dict[str, Any] = {}
        self.relay_gen = 0
        self.n = 0
        self._closed = False
        self.loop = asyncio.new_event_loop()
        self._ensure_relay()
        self._run(self._setup())

    # -- plumbing ------------------------------------------------------------------------------
    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        return self.loop.run_until_complete(bounded(coro, timeout, what="step", error=DurableStreamViolation))

    async def _setup(self) -> None:
        import redis.asyncio as aioredis

        r = self.h.redis
        self.admin = aioredis.Redis(host=r.host, port=r.port, password=r.password, socket_timeout=5.0)
        self.astore = StreamStore(self.admin, self.cfg)
        self.judge = StreamJudge(self.admin, self.astore)

    def _fail(self, inv: str, msg: str) -> None:
        raise DurableStreamViolation(f"{inv}: {msg}")

    def _ensure_relay(self) -> None:
        """A live, running relay (a previous example or rule may have left it dead or stopped)."""
        proc = self.h.relay.process  # type: ignore[union-attr]
        if proc.paused:
            self.h.resume_relay()
        if not proc.alive:
            self.h.restart_relay()
            self.relay_gen += 1

    def _emissions(self) -> list[tuple[str, int, str, bytes]] | None:
        """The live relay's emissions. A dead relay's runs are not judged against emissions: what it
        emitted between the last fetch and its death is unknowable (they were judged while it lived)."""
        try:
            return self.h.emissions()
        except HarnessError:
            return None

    def _live(self, conv: str) -> PTurn | None:
        """The conversation's unfinished turn; one whose record already ended is judged and retired."""
        for t in reversed(self.turns):
            if t.conv == conv and not t.ended and not t.start_failed:
                rec = self._record(t.conv, t.mid)
                if rec is not None and rec["status"] != "in_progress":
                    t.ended = True
                    self._check_outcome(t)
                    return None
                return t
        return None

    def _record(self, conv: str, mid: str) -> dict[str, Any] | None:
        return self._run(self.astore.record(conv, mid))

    def _c(self, i: int) -> str:
        return self.convs[i % 2]

    # -- rules ---------------------------------------------------------------------------------
    @precondition(lambda self: "turn" in self.enabled)
    @rule(i=st.integers(0, 1), outcome=st.sampled_from(OUTCOMES), deltas=st.integers(1, 8),
          where=st.integers(0, 8), stage=st.sampled_from(STAGES), hold=st.booleans())
    def start_turn(self, i: int, outcome: str, deltas: int, where: int, stage: str, hold: bool) -> None:
        conv = self._c(i)
        if self._live(conv) is not None:
            return
        self._ensure_relay()
        self.n += 1
        hold_at = min(where, deltas) if hold and outcome != "bootstrap_failure" else None
        t = PTurn(conv, f"m{self.n}", TurnScript(outcome, deltas, at=where, stage=stage, hold_at=hold_at),
                  self.relay_gen, held=hold_at is not None, disturbed=bool(self.link_faults.get("redis-producer")))
        self.turns.append(t)
        try:
            self.h.start_turn(conv, t.mid, t.script)
        except HarnessError as exc:
            if not t.disturbed:
                self._fail("start", f"start of {t.mid} failed on a healthy link: {exc}")
            t.start_failed = True

    @precondition(lambda self: "release" in self.enabled)
    @rule(i=st.integers(0, 1))
    def release(self, i: int) -> None:
        t = self._live(self._c(i))
        if t is not None and not t.orphaned:
            self._release(t)

    def _release(self, t: PTurn) -> None:
        if t.held:
            self.h.release(t.mid)
            t.held = False

    @precondition(lambda self: "await" in self.enabled)
    @rule(i=st.integers(0, 1))
    def await_turn(self, i: int) -> None:
        t = self._live(self._c(i))
        if t is None:
            return
        self._heal_link("redis-producer")
        self._finish(t)

    def _finish(self, t: PTurn) -> None:
        """Let ``t`` end: released and awaited through its relay, or reaped if its relay is gone."""
        bound = self.cfg.write_deadline_s + self.cfg.terminal_deadline_s + self.cfg.bootstrap_timeout_s + 5
        if not t.orphaned and t.relay_gen == self.relay_gen:
            self._release(t)
            if self.h.outcome(t.mid, timeout=bound) is None:
                self._fail("INV-17/20 bounded run", f"turn {t.mid} did not end within {bound}s")
        else:
            self._wait_finished(t, self.cfg.lease_ttl_s + self.cfg.reaper_interval_s + self.cfg.deliver_bound_s + 2)
        t.ended = True
        self._check_outcome(t)

    def _wait_finished(self, t: PTurn, bound: float) -> None:
        def finished() -> bool:
            rec = self._record(t.conv, t.mid)
            return rec is None or rec["status"] != "in_progress"
        try:
            wait_until(finished, bound, f"{t.mid} to finish", interval=self.cfg.reaper_interval_s / 2)
        except WaitTimeout:
            self._fail("INV-15 no orphans", f"{t.mid} still in_progress {bound:.1f}s after its producer died: "
                                            f"{self._record(t.conv, t.mid)}")

    @precondition(lambda self: "cancel" in self.enabled)
    @rule(i=st.integers(0, 1))
    def cancel(self, i: int) -> None:
        t = self._live(self._c(i))
        if t is None:
            return
        t.cancelled = True
        try:
            self.h.cancel(t.conv, t.mid)
        except HarnessError:
            if not self.link_faults.get("redis-consumer"):
                raise

    @precondition(lambda self: "kill_relay" in self.enabled)
    @rule()
    def kill_relay(self) -> None:
        """SIGKILL, then a fresh relay: the old one's turns are orphans for the reaper (INV-15)."""
        if not self.h.relay.process.alive:  # type: ignore[union-attr]
            return  # already dead: a fresh one starts when a rule needs it
        self.h.kill_relay()
        for t in self.turns:
            if not t.ended and t.relay_gen == self.relay_gen:
                t.orphaned = True

    @precondition(lambda self: "fence_relay" in self.enabled)
    @rule()
    def fence_relay(self) -> None:
        """SIGSTOP past the lease until the reaper closed its turns, then SIGCONT (INV-16)."""
        live = [t for t in self.turns if not t.ended and not t.start_failed and t.relay_gen == self.relay_gen
                and not t.orphaned]
        if not live or not self.h.relay.process.alive:  # type: ignore[union-attr]
            return
        self.h.pause_relay()
        try:
            for t in live:
                self._wait_finished(t, self.cfg.lease_ttl_s + 2 * self.cfg.reaper_interval_s + self.cfg.deliver_bound_s)
        finally:
            self.h.resume_relay()
        for t in live:
            t.orphaned = True
            rec = self._record(t.conv, t.mid)
            if rec is not None and rec["status"] == "completed" and not t.held:
                continue  # it finished before the stop took effect
            self._release(t)  # the resumed producer's turn goes on: fenced, it must write nothing (INV-16)
            out = self.h.outcome(t.mid, timeout=self.cfg.write_deadline_s + self.cfg.terminal_deadline_s + 5)
            if out is not None and out["status"] not in ("interrupted", "completed", "failed"):
                self._fail("INV-16 fencing", f"{t.mid}: resumed producer outcome {out}")

    @precondition(lambda self: "terminate_relay" in self.enabled)
    @rule()
    def terminate_relay(self) -> None:
        """SIGTERM: every live run ends ``cancelled{relay_shutdown}`` (INV-17); then a fresh relay."""
        if not self.h.relay.process.alive:  # type: ignore[union-attr]
            return
        live = [t for t in self.turns if not t.ended and t.relay_gen == self.relay_gen and not t.start_failed]
        self.h.terminate_relay()
        for t in live:
            t.orphaned = True  # its process is gone: judged from the record

    @precondition(lambda self: "restart_redis" in self.enabled and self.redis is not None
                  and getattr(self.redis, "process", None) is not None)
    @rule()
    def restart_redis(self) -> None:
        """SIGKILL + restart of redis-server with AOF ``always``: no acknowledged entry is lost (INV-24)."""
        for t in self.turns:
            if not t.ended:
                t.disturbed = True
        self.faults.process(self.redis).restart()

    @precondition(lambda self: "fault_link" in self.enabled)
    @rule(link=st.sampled_from(LINKS), kind=st.sampled_from(LINK_FAULTS))
    def fault_link(self, link: str, kind: str) -> None:
        self._heal_link(link)
        if link == "redis-producer":
            for t in self.turns:
                if not t.ended:
                    t.disturbed = True
        self.link_faults[link] = arm_link_fault(self.faults, self.h.proxies[link], kind)

    def _heal_link(self, link: str | None = None) -> None:
        heal_links(self.link_faults, link)

    @precondition(lambda self: "heal" in self.enabled)
    @rule()
    def heal(self) -> None:
        self._heal_link()

    @precondition(lambda self: "fault_terminal" in self.enabled)
    @rule(i=st.integers(0, 1), kind=st.sampled_from(("partition", "reset_peer")))
    def fault_terminal(self, i: int, kind: str) -> None:
        """Hold a gated turn's terminal call, fault the producer link exactly then, heal (INV-4/14)."""
        t = self._live(self._c(i))
        if t is None or not t.held or t.orphaned or t.script.outcome == "bootstrap_failure":
            return
        self._heal_link("redis-producer")
        armed = self.h.arm("append", kinds=["complete", "error"], hold_s=15.0)
        self.h.release(t.mid)
        t.held = False
        t.disturbed = True
        try:
            armed.wait_hit(10.0)
        except HarnessError:
            armed.release()
            return  # the turn ended another way (a cancel, a source failure before the terminal)
        px = self.h.proxies["redis-producer"]
        f = self.faults.partition(px, "downstream") if kind == "partition" else self.faults.reset_peer(px, timeout=0)
        armed.release()
        try:  # heal once the terminal call's first attempt has an outcome (or after 5 s)
            wait_until(lambda: any(op["type"] != "invoke" and set(op.get("kinds", ())) & {"complete", "error"}
                                   for op in self.h.history()), 5, "the terminal call's first attempt", interval=0.05)
        except WaitTimeout:
            pass
        f.heal()

    @precondition(lambda self: "connect" in self.enabled)
    @rule(i=st.integers(0, 1), pick=st.integers(0, 7), frac=st.floats(0, 1), past=st.booleans())
    def connect(self, i: int, pick: int, frac: float, past: bool) -> None:
        """An SSE consumer through ``stream-http`` of one message at a cursor in ``[floor_seq, end]``."""
        conv = self._c(i)
        if len(self.consumers) >= 12:
            return
        start = pick_start(self._run(self.astore.meta(conv)), self._run(self.astore.records(conv)), pick, frac, past)
        if start is not None:
            self.consumers.append(SSEConsumer(conv, self.h.consumer(conv, start.message_id, after_seq=start.cursor),
                                              start.past_terminal))

    # -- judging -------------------------------------------------------------------------------
    def _check_outcome(self, t: PTurn) -> None:
        rec = self._record(t.conv, t.mid)
        if rec is None:
            if not t.start_failed and not t.disturbed:
                self._fail("INV-12 record", f"{t.mid} has no record")
            return
        if rec["status"] == "in_progress":
            self._fail("INV-15/17", f"{t.mid} ended but its record is in_progress: {rec}")
        allowed = {t.script.expected_status}
        if t.cancelled or t.orphaned:
            allowed.add("interrupted")
        if t.disturbed:
            allowed |= {"interrupted", "failed"}
        if rec["status"] not in allowed:
            self._fail("outcome", f"{t.mid} ({t.script.outcome}, cancelled={t.cancelled}, orphaned={t.orphaned}, "
                                  f"disturbed={t.disturbed}) ended {rec['status']}: {rec}")
        if rec["status"] == "failed" and rec.get("error_code") != "store.unavailable" and not t.disturbed:
            if rec.get("error_code") != t.script.expected_error_code:
                self._fail("INV-13/5 error", f"{t.mid}: error_code {rec.get('error_code')!r}, "
                                             f"want {t.script.expected_error_code!r}")

    def _deliveries(self, final: bool) -> dict[str, list[Delivery]]:
        out: dict[str, list[Delivery]] = {}
        for conv, c, past_terminal in self.consumers:
            d = c.delivery()
            excused = isinstance(c.error, EXCUSED)
            if past_terminal:  # answered 204: nothing to deliver (INV-6)
                if c.done and c.items:
                    self._fail("INV-6 resume", f"{c.client.client_id}: cursor {d.cursor0} at or past the terminal, "
                                               f"yet {len(c.items)} entries were delivered")
                d.target = None
            elif not c.done or excused:
                d.target = None
            elif c.error is not None:
                self._fail("consumer", f"{c.client.client_id}: ended with {c.error!r}")
            out.setdefault(conv, []).append(d)
        return out

    def _judge(self, final: bool) -> list[str]:
        return self._run(self.judge.judge(self.convs, self._deliveries(final), self._emissions, final))

    @invariant()
    def stream_is_consistent(self) -> None:
        bad = self._judge(final=False)
        if bad:
            raise DurableStreamViolation(f"{len(bad)} violation(s):\n" + "\n".join(bad))

    def teardown(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._heal_link()
            self._ensure_relay()
            for t in self.turns:
                if not t.ended and not t.start_failed:
                    self._finish(t)
            deadline = time.monotonic() + self.cfg.deliver_bound_s + 2
            for _, c, _ in self.consumers:
                try:
                    c.join(max(0.1, deadline - time.monotonic()))
                except HarnessError as exc:
                    raise DurableStreamViolation(f"INV-4/6: {exc}") from None
            bad = self._judge(final=True)
            if bad:
                raise DurableStreamViolation(f"at teardown, {len(bad)} violation(s):\n" + "\n".join(bad))
        finally:
            self._heal_link()
            self._ensure_relay()
            self._run(self.admin.aclose())
            self.loop.close()


def durable_stream_process_machine(harness: StreamHarness, faults: Any, *, redis: Any = None,
                                   enabled: Iterable[str] | None = None) -> type[DurableStreamProcessMachineBase]:
    """A machine class bound to a started ``harness``, the test's ``cbchaos_faults`` and (for the
    ``restart_redis`` rule) the restartable Redis server behind it."""
    chosen = frozenset(enabled) if enabled is not None else frozenset(PROCESS_RULES)
    unknown = chosen - set(PROCESS_RULES)
    if unknown:
        raise ValueError(f"unknown process-machine rules {sorted(unknown)}; known: {', '.join(PROCESS_RULES)}")
    return bind_machine("DurableStreamProcessMachine", DurableStreamProcessMachineBase,
                        {"harness": harness, "faults": faults, "redis": redis, "enabled": chosen})
