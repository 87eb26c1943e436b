"""A Hypothesis state machine for the durable turn-event stream (docs/stream-design.md#harness).

Rules start turns with scripted outcomes (complete, error event, source failure mid-stream,
bootstrap stage failure; optionally held at a gate mid-stream), release, await or cancel them,
fence a held producer (its lease expires and the reaper closes the message while it is paused),
fault the producer or the consumer Redis link (reset_peer, down, downstream partition) and heal
them, connect consumers at arbitrary cursors and targets, reconnect them from their cursor, and
trim. After every step the log, the records and every consumer's deliveries are judged by
:func:`pytest_cbchaos.stream.check_stream` plus record consistency (INV-12: ``last_seq`` never
decreases, a status changes once, a finished record equals ``rebuild_record``) and trim safety
(INV-26); at teardown every fault is healed, every turn awaited, orphans left to the reaper
(``T_orphan``), consumers drained (``T_live``) and the whole run checked with every message
finished and every consumer at its target's terminal (INV-3, 4, 5, 6, 8, 13, 14, 17).

The relay runs in-process on one event loop owned by the machine (each step drives it with a
bound); the child-process relay (docs/stream-design.md#harness) (SIGKILL/SIGSTOP of the relay, Redis restart) is a
later step.

Build a runnable machine with :func:`durable_stream_machine` bound to a :class:`DurableStreamEnv`
(:class:`ProxiedRedisEnv` is one over real Redis behind two kit proxies)::

    Machine = durable_stream_machine(env)
    hypothesis.stateful.run_state_machine_as_test(Machine, settings=...)

Mutants plug in through ``store_class`` (the producer's store), ``read_loop_class`` and
``relay_class``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, runtime_checkable

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pytest_cbchaos.lag import LagSampler
from pytest_cbchaos.stream import Reaper, StreamConfig, StreamStore, TurnRelay
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.envelope import Envelope
from pytest_cbchaos.stream.reader import Notice, ReadLoop, StreamConnectError
from pytest_cbchaos.stream.scripted import OUTCOMES, GatedScript, TurnScript
from pytest_cbchaos.stream.sources import STAGES
from pytest_cbchaos.waiting import bounded

from .binding import bind_machine
from .link_faults import LINK_FAULTS, arm_link_fault, heal_links
from .cursors import pick_start
from .lease_watch import LeaseWatch
from .stream_judge import StreamJudge

RULES = ("turn", "release", "await", "cancel", "fence", "fault_producer", "fault_consumer", "heal",
         "connect", "reconnect", "trim", "lose_reply")
#: single-event calls whose reply the ``lose_reply`` rule loses (docs/stream-design.md#script-outcome-cells)
SINGLE_EVENT_CALLS = ("terminal", "control", "content")
#: notices that legitimately end a consumer before its target's terminal
EXCUSED_ENDINGS = ("truncated", "outage", "superseded", "epoch_changed", "stream_lost", "cursor_ahead", "closed")


class DurableStreamViolation(AssertionError):
    pass


@runtime_checkable
class DurableStreamEnv(Protocol):
    """What the machine needs from the world."""

    config: StreamConfig

    def client(self, side: str) -> Any:
        """A fresh ``redis.asyncio.Redis`` for ``side`` (``producer``, ``consumer`` or ``admin``: the
        admin link never goes through a fault). Called inside the machine's event loop."""

    def fault(self, side: str, kind: str) -> Any:
        """Arm fault ``kind`` (one of :data:`LINK_FAULTS`) on ``side``'s link; returns a handle with ``heal()``."""


class ProxiedRedisEnv:
    """Real Redis (``proc``: host, port, password) with the producer and the consumer links each
    behind its own kit proxy, faults from the kit's ``FaultController`` (``cbchaos_faults``)."""

    def __init__(self, proc: Any, producer_proxy: Any, consumer_proxy: Any, faults: Any,
                 config: StreamConfig | None = None, *, socket_timeout: float = 1.0) -> None:
        self.proc, self.faults = proc, faults
        self.proxies = {"producer": producer_proxy, "consumer": consumer_proxy}
        self.config = config or StreamConfig.ci()
        self.socket_timeout = socket_timeout

    def client(self, side: str) -> Any:
        import redis.asyncio as aioredis

        from pytest_cbchaos.servers.redis import no_async_retry

        px = self.proxies.get(side)
        host, port = (px.listen_host, px.listen_port) if px is not None else (self.proc.host, self.proc.port)
        return aioredis.Redis(host=host, port=port, password=self.proc.password,
                              socket_timeout=self.socket_timeout if px is not None else 2.0,
                              socket_connect_timeout=1.0, retry=no_async_retry())

    def fault(self, side: str, kind: str) -> Any:
        return arm_link_fault(self.faults, self.proxies[side], kind)


@dataclass
class Turn:
    conv: str
    mid: str
    outcome: str
    stage: str | None
    source: GatedScript | None = None
    handle: Any = None
    disturbed: bool = False  # a producer-link fault overlapped its life
    cancelled: bool = False
    fenced: bool = False
    lapsed: bool = False  # fenced after its lease may have lapsed, renewed on time (LeaseWatch): not a violation
    start_failed: bool = False
    result: Any = None

    @property
    def live(self) -> bool:
        return self.handle is not None and self.handle.task is not None and not self.handle.task.done()


@dataclass
class Consumer:
    name: str
    conv: str
    delivery: Delivery
    loop: ReadLoop | None = None
    task: asyncio.Task | None = None
    ended_by: str | None = None
    notices: list[str] = field(default_factory=list)
    reconnects: int = 0

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def got_terminal(self) -> bool:
        t = self.delivery.target
        return any(e.is_terminal and e.message_id == t for e, _ in self.delivery.items)


class DurableStreamMachineBase(RuleBasedStateMachine):
    """Rules and invariants; bind an environment with :func:`durable_stream_machine`."""

    env: DurableStreamEnv
    enabled: frozenset[str] = frozenset(RULES)
    store_class: type = StreamStore
    read_loop_class: type = ReadLoop
    relay_class: type = TurnRelay
    conversations: tuple[str, ...] = ("a", "b")
    serial_turns: bool = False  # start_turn awaits a live turn of its conversation instead of skipping
    step_timeout_s: float = 30.0
    violations_seen: list[str]  # every violation any example raised (a fresh list per bound class)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.cfg = self.env.config.replace(prefix=f"cbchaos:dsm:{secrets.token_hex(4)}:")
        self.turns: list[Turn] = []
        self.consumers: list[Consumer] = []
        self.faults: dict[str, Any] = {}
        self.n = 0
        self._closed = False
        self._run(self._setup())

    # -- plumbing ------------------------------------------------------------------------------
    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        timeout = timeout or self.step_timeout_s

        return self.loop.run_until_complete(bounded(coro, timeout, what="step", error=DurableStreamViolation))

    async def _setup(self) -> None:
        self.pclient, self.cclient, self.admin = (self.env.client(s) for s in ("producer", "consumer", "admin"))
        self.pstore = self.store_class(self.pclient, self.cfg)
        self.lag = LagSampler()  # the relay's loop: renewal gaps are judged beside its observed lag
        self.lag.ensure_task()
        self.leases = LeaseWatch(self.cfg.lease_ttl_s, renew_s=self.cfg.lease_renew_s, lag=self.lag)
        self.leases.wrap(self.pstore)
        self.lose_next: set[str] = set()  # the call shapes the ``lose_reply`` rule armed for the next turn
        self.lose_for: dict[str, set[str]] = {}  # message id -> shapes whose next call loses its reply
        self.lost_replies: list[tuple[str, str, int]] = []  # (shape, message id, first step)
        self.pstore.append = self._losing_append(self.pstore.append)  # type: ignore[method-assign]
        self.cstore = StreamStore(self.cclient, self.cfg)
        self.astore = StreamStore(self.admin, self.cfg)
        self.history: list[dict[str, Any]] = []
        self.relay = self.relay_class(self.pstore, self.cfg, history=self.history)
        self.reaper = Reaper(StreamStore(self.admin, self.cfg))
        self.reaper.start()
        self.judge = StreamJudge(self.admin, self.astore)

    def _losing_append(self, append: Any) -> Any:
        """The producer store's ``append``: a single-event call of the armed shape is applied and its
        reply lost (the relay sees a reset and must resend it identically)."""
        async def losing(call: Any) -> Any:
            reply = await append(call)
            armed = self.lose_for.get(call.message_id, set())
            if len(call.events) == 1 and call.events[0][1] in armed:
                shape = call.events[0][1]
                armed.discard(shape)
                self.lost_replies.append((shape, call.message_id, call.first_step))
                raise ConnectionError(f"reply of the {shape} call {call.message_id}/{call.first_step} lost")
            return reply
        return losing

    def _violation(self, message: str) -> DurableStreamViolation:
        """The exception to raise, remembered on the machine class (``violations_seen``): a mutant test
        judges by what any example saw, even when Hypothesis's replay of it takes another path."""
        self.violations_seen.append(message)
        return DurableStreamViolation(message)

    def _fail(self, inv: str, msg: str) -> None:
        raise self._violation(f"{inv}: {msg}")

    def _c(self, conv: str) -> str:
        """Map the drawn name onto the bound conversations (one conversation: every draw hits it)."""
        return self.conversations[("a", "b").index(conv) % len(self.conversations)]

    def _live(self, conv: str) -> Turn | None:
        for t in reversed(self.turns):
            if t.conv == conv and t.live:
                return t
        return None

    def _mark_disturbed(self) -> None:
        for t in self.turns:
            if t.live:
                t.disturbed = True

    async def _await_turn(self, t: Turn) -> None:
        if t.source is not None:
            t.source.gate.set()
        if t.handle is None or t.handle.task is None:
            return
        bound = self.cfg.write_deadline_s + self.cfg.terminal_deadline_s + self.cfg.bootstrap_timeout_s + 5
        done, _ = await asyncio.wait({t.handle.task}, timeout=bound)
        if not done:
            self._fail("INV-17/20 bounded run", f"turn {t.mid} did not end within {bound}s")
        t.result = t.handle.task.result()

    # -- rules ---------------------------------------------------------------------------------
    @precondition(lambda self: "turn" in self.enabled)
    @rule(conv=st.sampled_from(("a", "b")), outcome=st.sampled_from(OUTCOMES), deltas=st.integers(1, 10),
          where=st.integers(0, 10), stage=st.sampled_from(STAGES), hold=st.booleans(), control=st.booleans())
    def start_turn(self, conv: str, outcome: str, deltas: int, where: int, stage: str, hold: bool,
                   control: bool) -> None:
        conv = self._c(conv)
        live = self._live(conv)
        if live is not None:
            if not self.serial_turns:
                return
            self.await_turn(conv)  # a drawn turn always starts: what it does depends on the draws only
        self.n += 1
        mid = f"m{self.n}"
        src = TurnScript(outcome, deltas, at=where, stage=stage, hold_at=min(where, deltas) if hold else None,
                         control=control).source()
        t = Turn(conv, mid, outcome, stage if outcome == "bootstrap_failure" else None, src,
                 disturbed=bool(self.faults.get("producer")))
        self.lose_for[mid], self.lose_next = set(self.lose_next), set()
        self.turns.append(t)

        async def go() -> None:
            try:
                t.handle = await self.relay.start(conv, src, model_id="m", message_id=mid)
            except Exception as exc:  # the producer link is faulted: indeterminate open_turn
                if not t.disturbed:
                    self._fail("start", f"start of {mid} failed on a healthy link: {exc!r}")
                t.start_failed = True
        self._run(go())

    @precondition(lambda self: "release" in self.enabled)
    @rule(conv=st.sampled_from(("a", "b")))
    def release(self, conv: str) -> None:
        conv = self._c(conv)
        t = self._live(conv)
        if t is not None and t.source is not None:
            t.source.gate.set()
        self._run(asyncio.sleep(0))

    @precondition(lambda self: "await" in self.enabled)
    @rule(conv=st.sampled_from(("a", "b")))
    def await_turn(self, conv: str) -> None:
        conv = self._c(conv)
        t = self._live(conv)
        if t is None:
            return
        self._heal("producer")  # the producer's fault window ends here
        self._run(self._await_turn(t))
        self._check_outcome(t)

    @precondition(lambda self: "cancel" in self.enabled)
    @rule(conv=st.sampled_from(("a", "b")))
    def cancel(self, conv: str) -> None:
        conv = self._c(conv)
        t = self._live(conv)
        if t is None:
            return
        t.cancelled = True

        async def go() -> None:
            try:
                await self.relay.cancel(conv, t.mid)
            except Exception:
                if not self.faults.get("producer"):
                    raise
        self._run(go())

    @precondition(lambda self: "fence" in self.enabled)
    @rule(conv=st.sampled_from(("a", "b")))
    def fence(self, conv: str) -> None:
        """The producer is paused past its lease (held at its gate, lease gone), the reaper closes
        the message, then the producer resumes: it must write nothing (INV-16)."""
        conv = self._c(conv)
        t = self._live(conv)
        if t is None or t.source is None or t.source.gate.is_set() or t.cancelled:
            return
        t.fenced = True

        async def go() -> None:
            await self.admin.delete(self.astore.keys(conv)[4])
            await self.reaper.reap_conversation(conv)
            await self._await_turn(t)
        self._heal("producer")
        self._run(go())
        rec = self._run(self.astore.record(conv, t.mid))
        if rec is None or rec["status"] != "interrupted":
            self._fail("INV-16 fencing", f"{t.mid}: after the reaper closed it the record is {rec}")

    @precondition(lambda self: "lose_reply" in self.enabled)
    @rule(shape=st.sampled_from(SINGLE_EVENT_CALLS))
    def lose_reply(self, shape: str) -> None:
        """In the next turn started, the first single-event append of ``shape`` (a lone terminal, a control
        event, a content event) is applied and its reply lost: not a disturbance, the identical resend
        must answer DUP (INV-14). Armed per turn, so which call loses its reply depends on the draws only."""
        self.lose_next.add(shape)

    def _fault(self, side: str, kind: str) -> None:
        self._heal(side)
        if side == "producer":
            self._mark_disturbed()
        self.faults[side] = self.env.fault(side, kind)
        self._run(asyncio.sleep(0.01))  # let in-flight calls meet the fault

    @precondition(lambda self: "fault_producer" in self.enabled)
    @rule(kind=st.sampled_from(LINK_FAULTS))
    def fault_producer(self, kind: str) -> None:
        self._fault("producer", kind)

    @precondition(lambda self: "fault_consumer" in self.enabled)
    @rule(kind=st.sampled_from(LINK_FAULTS))
    def fault_consumer(self, kind: str) -> None:
        self._fault("consumer", kind)

    def _heal(self, side: str | None = None) -> None:
        heal_links(self.faults, side)

    @precondition(lambda self: "heal" in self.enabled)
    @rule()
    def heal(self) -> None:
        self._heal()

    @precondition(lambda self: "connect" in self.enabled)
    @rule(conv=st.sampled_from(("a", "b")), pick=st.integers(0, 7), frac=st.floats(0, 1), past=st.booleans())
    def connect(self, conv: str, pick: int, frac: float, past: bool) -> None:
        """A new consumer of one message (an older one or the current one) at a cursor in
        ``[floor_seq, end]``; ``past`` aims at or after a finished target's terminal (204)."""
        conv = self._c(conv)
        async def go() -> None:
            meta = await self.astore.meta(conv)
            start = pick_start(meta, await self.astore.records(conv), pick, frac, past)
            if start is None:
                return
            self.n += 1
            c = Consumer(f"k{self.n}", conv, Delivery(start.cursor, name=f"k{self.n}", target=start.message_id))
            self.consumers.append(c)
            await self._open(c, start.cursor, meta, start.record)
        self._run(go())

    async def _open(self, c: Consumer, cursor: int, meta: dict[str, Any] | None, rec: dict[str, Any] | None) -> None:
        loop = self.read_loop_class(self.cstore, c.conv, after_seq=cursor, message_id=c.delivery.target,
                                    client_id=c.name)
        try:
            await loop.connect()
        except StreamConnectError as exc:
            c.ended_by = f"connect:{exc.status}:{exc.code}"
            await loop.aclose()
            if exc.code == "finished":
                if rec is not None and rec["status"] != "in_progress" and rec["terminal_seq"] > cursor:
                    self._fail("INV-6 resume", f"{c.name}: 204 at cursor {cursor} below terminal {rec['terminal_seq']}")
                c.delivery.target = None
            elif exc.code == "truncated":
                if meta is not None and cursor >= meta["floor_seq"]:
                    self._fail("INV-26 trim", f"{c.name}: truncated at cursor {cursor} >= floor {meta['floor_seq']}")
                c.delivery.target = None
            elif exc.code == "store_unavailable" and self.faults.get("consumer"):
                c.delivery.target = None
            else:
                self._fail("connect", f"{c.name}: unexpected {exc.status} {exc.code} at cursor {cursor}: {exc.body}")
            return
        c.loop = loop
        c.ended_by = None

        async def consume() -> None:
            try:
                async for item in loop.items():
                    if isinstance(item, Envelope):
                        c.delivery.add(item, time.monotonic())
                    elif isinstance(item, Notice):
                        c.notices.append(item.code)
            finally:
                await loop.aclose()
            c.ended_by = loop.ended_by or "returned"
        c.task = asyncio.get_running_loop().create_task(consume(), name=f"consumer:{c.name}")
        await asyncio.sleep(0)

    async def _close(self, c: Consumer) -> None:
        if c.loop is not None:
            await c.loop.aclose()
        if c.task is not None and not c.task.done():
            c.task.cancel()
            await asyncio.wait({c.task}, timeout=5)
        if c.ended_by is None:
            c.ended_by = "closed"

    # a precondition never reads task state: whether a consumer still runs depends on timing, and
    # a rule set that changes between a run and its replay is FlakyStrategyDefinition (docs/stateful.md)
    @precondition(lambda self: "reconnect" in self.enabled)
    @rule(i=st.integers(0, 20))
    def reconnect(self, i: int) -> None:
        """Drop a running consumer (none running: a no-op) and resume from its cursor (the last seq
        it delivered)."""
        running = [c for c in self.consumers if c.running]
        if not running:
            return
        c = running[i % len(running)]

        async def go() -> None:
            await self._close(c)
            if c.got_terminal:
                return
            cursor = c.delivery.items[-1][0].seq if c.delivery.items else c.delivery.cursor0
            c.reconnects += 1
            await self._open(c, cursor, await self.astore.meta(c.conv),
                             await self.astore.record(c.conv, c.delivery.target))
        self._run(go())

    @precondition(lambda self: "trim" in self.enabled)
    @rule(conv=st.sampled_from(("a", "b")), keep=st.integers(1, 3))
    def trim(self, conv: str, keep: int) -> None:
        conv = self._c(conv)
        async def go() -> None:
            before = await self.astore.meta(conv)
            if before is None:
                return
            live = {m: r for m, r in (await self.astore.records(conv)).items() if r["status"] == "in_progress"}
            await self.astore.trim(conv, keep_last=keep)
            after = await self.astore.meta(conv)
            if after["last_seq"] < before["last_seq"]:
                self._fail("INV-26 trim", f"{conv}: last_seq lowered {before['last_seq']} -> {after['last_seq']}")
            for m, r in live.items():
                if after["floor_seq"] >= r["first_seq"]:
                    self._fail("INV-26 trim", f"{conv}: floor {after['floor_seq']} cut into in-progress {m} ({r})")
        self._run(go())

    # -- invariants ----------------------------------------------------------------------------
    def _check_outcome(self, t: Turn) -> None:
        """The scripted outcome, unless a cancel, a fence or a producer fault may have changed it."""
        if t.handle is not None and not t.disturbed:  # a link fault may hold a renewal: the test's doing
            late = self.leases.cadence(t.handle.stream_id)
            if late:
                self._fail("INV-14 lease renewal", f"{t.mid}: " + "; ".join(late[:3]))
        rec = self._run(self.astore.record(t.conv, t.mid))
        if rec is None:
            meta = self._run(self.astore.meta(t.conv))
            trimmed = meta is not None and t.handle is not None and t.handle.first_seq <= meta["floor_seq"]
            if not (t.start_failed or trimmed):
                self._fail("INV-12 record", f"{t.mid} has no record (floor {meta and meta['floor_seq']})")
            return
        out = t.result
        if out is not None and out.stop_reason and not (t.disturbed or t.fenced or t.cancelled):
            lease = self.leases.judge(t.handle.stream_id) if out.stop_reason == "FENCED" else None
            t.lapsed = lease is not None and not lease.intact
            if not t.lapsed:
                lost = [x for x in self.lost_replies if x[1] == t.mid]
                self._fail("INV-14 indeterminate writes", f"{t.mid} stopped with {out.stop_reason} on a healthy link "
                                                          f"({lease.text if lease else 'no lease lapse'}; lost replies "
                                                          f"{lost}): {out}")
        if rec["status"] == "in_progress":
            return  # a failed producer: the reaper closes it (checked at teardown)
        want = {"complete": "completed"}.get(t.outcome, "failed")
        if t.fenced:
            want = "interrupted"
        allowed = {want}
        if t.cancelled or t.lapsed:
            allowed.add("interrupted")
        if t.disturbed:
            allowed |= {"interrupted", "failed"}
        if rec["status"] not in allowed:
            self._fail("outcome", f"{t.mid} ({t.outcome}, cancelled={t.cancelled}, disturbed={t.disturbed}) "
                                  f"ended {rec['status']}: {rec}")
        if rec["status"] == "failed" and rec.get("error_code") != "store.unavailable":
            code = TurnScript(t.outcome, stage=t.stage or "session").expected_error_code
            if rec.get("error_code") != code:
                self._fail("INV-13/5 error", f"{t.mid} ({t.outcome}): error_code {rec.get('error_code')!r}, want {code!r}")
        if rec["status"] == "interrupted" and not (t.cancelled or t.fenced or t.disturbed or t.lapsed):
            self._fail("INV-17 cancel", f"{t.mid} cancelled without a cancel: {rec}")

    async def _judge(self, final: bool) -> list[str]:
        deliveries: dict[str, list[Delivery]] = {}
        for c in self.consumers:
            d = c.delivery
            judged_target = d.target if (not c.running and c.ended_by not in EXCUSED_ENDINGS
                                         and not str(c.ended_by).startswith("connect:")) else None
            deliveries.setdefault(c.conv, []).append(Delivery(d.cursor0, list(d.items), d.name, judged_target))
        return await self.judge.judge(self.conversations, deliveries, self.relay.emissions, final)

    @invariant()
    def stream_is_consistent(self) -> None:
        bad = self._run(self._judge(final=False))
        if bad:
            raise self._violation(f"{len(bad)} violation(s):\n" + "\n".join(bad))

    # -- teardown ------------------------------------------------------------------------------
    async def _quiesce(self) -> list[str]:
        bad: list[str] = []
        for t in self.turns:
            if t.source is not None:
                t.source.gate.set()
        for t in self.turns:
            await self._await_turn(t)
        # orphans (an indeterminate open_turn, a producer that gave up): the reaper, within T_orphan
        bound = self.cfg.lease_ttl_s + self.cfg.reaper_interval_s + self.cfg.deliver_bound_s
        deadline = time.monotonic() + bound
        while True:
            open_ = [(conv, m) for conv in self.conversations
                     for m, r in (await self.astore.records(conv)).items() if r["status"] == "in_progress"]
            if not open_:
                break
            if time.monotonic() > deadline:
                bad.append(f"INV-15 no orphans: still in_progress after {bound}s: {open_}")
                break
            await asyncio.sleep(self.cfg.reaper_interval_s / 2)
        # live consumers: their target's terminal within T_live
        running = [c.task for c in self.consumers if c.running]
        if running:
            await asyncio.wait(running, timeout=self.cfg.deliver_bound_s)
        for c in self.consumers:
            if c.running:
                bad.append(f"INV-4/6: consumer {c.name} (target {c.delivery.target}, cursor0 {c.delivery.cursor0}, "
                           f"{len(c.delivery.items)} delivered) still open {self.cfg.deliver_bound_s}s after quiescence")
                await self._close(c)
        return bad

    async def _shutdown(self) -> None:
        for c in self.consumers:
            await self._close(c)
        await self.relay.aclose()
        await self.reaper.stop()
        await self.lag.stop_task()
        async for key in self.admin.scan_iter(match=f"{self.cfg.prefix}*", count=500):
            await self.admin.delete(key)
        for cl in (self.pclient, self.cclient, self.admin):
            await cl.aclose()

    def teardown(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._heal()
            bad = self._run(self._quiesce(), timeout=60)
            for t in self.turns:
                if t.handle is not None:
                    self._check_outcome(t)
            bad += self._run(self._judge(final=True))
            if bad:
                raise self._violation(f"at teardown, {len(bad)} violation(s):\n" + "\n".join(bad))
        finally:
            try:
                self._heal()
                self._run(self._shutdown(), timeout=20)
            finally:
                self.loop.close()


def durable_stream_machine(env: DurableStreamEnv, *, enabled: Iterable[str] | None = None,
                           store_class: type = StreamStore, read_loop_class: type = ReadLoop,
                           relay_class: type = TurnRelay, conversations: tuple[str, ...] = ("a", "b"),
                           serial_turns: bool = False) -> type[DurableStreamMachineBase]:
    """A machine class bound to ``env``; ``store_class`` is the producer's store, ``read_loop_class``
    the consumers' loop, ``relay_class`` the producer (mutants plug in here). ``serial_turns``: a drawn
    turn awaits the live one instead of being skipped, so which turns run does not depend on timing."""
    chosen = frozenset(enabled) if enabled is not None else frozenset(RULES)
    unknown = chosen - set(RULES)
    if unknown:
        raise ValueError(f"unknown durable-stream machine rules {sorted(unknown)}; known: {', '.join(RULES)}")
    if not conversations or not set(conversations) <= {"a", "b"}:
        raise ValueError("conversations: a non-empty subset of ('a', 'b')")
    return bind_machine("DurableStreamMachine", DurableStreamMachineBase,
                        {"env": env, "enabled": chosen, "store_class": store_class, "read_loop_class": read_loop_class,
                         "relay_class": relay_class, "conversations": tuple(conversations),
                         "serial_turns": serial_turns, "violations_seen": []})
