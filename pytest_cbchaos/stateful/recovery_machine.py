"""A stall-recovery Hypothesis state machine (docs/recovery-design.md#invariants) that users can point at their own
runner.

The machine drives a :class:`TurnRunner` (``run_turn``, ``close``) through a
:class:`RecoveryChaosEnv`, which knows how to script the model provider, hurt the server process
and put toxics on the control and events planes. Each rule starts one turn with one fault and
records what the fault obliges the runner to report; the invariants below are checked after every
step:

* honest success (INV-1), shared and bounded budget (INV-2), exhaustion is failure (INV-3);
* fast death: a SIGKILL mid-turn gives ``SERVER_UNREACHABLE`` within 2 s, never a stall (INV-4);
* bounded stall: ``SESSION_STALLED`` between ``stall_timeout`` and ``stall_timeout + 1`` s after
  the last progress (INV-5), SIGSTOP held is a stall, never unreachable (INV-17);
* silent socket replaced, final idle kept (INV-7, INV-9); subscribe before prompt (INV-10);
* abort before retry (INV-12), full retry prompt (INV-13), provider errors never restart (INV-16);
* one consumer (INV-11) and bounded run (INV-20);
* no false stall on provider retry / child activity (INV-6), stream kept (INV-8), no double prompt
  (INV-14, given the server's user-message count), control-plane classification (INV-15), pause
  tolerance (INV-18); :func:`check_clean_teardown` checks a launcher handle after stop (INV-19).

Build a runnable machine with :func:`recovery_machine`; run it with
``hypothesis.stateful.run_state_machine_as_test``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pytest_cbchaos.lag import judged_text, within
from pytest_cbchaos.recovery.status import RunStatus, TERMINAL_OK_REASONS, TurnResult

from .binding import bind_machine

FAULTS = ("normal", "paced", "model_stall", "budget_exhaustion", "kill", "sigstop_held", "pause_short",
          "sse_silence", "events_reset", "subscribe_latency", "control_latency", "provider_error",
          "events_latency")


@runtime_checkable
class TurnRunner(Protocol):
    def run_turn(self, prompt: str, *, session_id: str | None = None) -> TurnResult: ...

    def close(self) -> None: ...


class ProviderRequest(Protocol):
    received_at: float
    client_closed_at: float | None

    def user_text(self) -> str: ...


class RecoveryChaosEnv(Protocol):
    """What the machine needs from the world. ``tests/recovery/oc_env.py`` has one over the opencode rig."""

    stall_timeout: float

    def make_runner(self, **config: Any) -> TurnRunner: ...
    def script_text(self, text: str, *, chunks: int = 1, delay: float = 0.0) -> None: ...
    def script_stall(self, text: str = "stalled") -> None: ...
    def script_http_error(self, status: int, retry_after: float | None = None) -> None: ...
    def release_provider(self) -> None: ...
    def wait_provider_stalled(self, timeout: float) -> None: ...
    def provider_main_requests(self) -> list[ProviderRequest]: ...
    def kill_server(self) -> None: ...
    # optional: ``wait_server_idle(timeout) -> bool``: the model answered and the server lists no busy
    # session (asked on the server itself, not through the proxies); forces the subscribe_latency ordering
    def pause_server(self) -> None: ...
    def resume_server(self) -> None: ...
    def add_toxic(self, plane: str, type: str, stream: str = "downstream", **attributes: Any) -> Any: ...
    def remove_toxic(self, plane: str, toxic: Any) -> None: ...
    def clean(self) -> None: ...


@dataclass
class Expectation:
    """What the injected fault obliges the runner to report for one turn."""

    fault: str
    prompt: str
    max_recoveries: int
    stall_timeout: float
    bound_s: float
    first_verdict: RunStatus | None = None
    first_verdict_within_s: float | None = None
    final_status: set[RunStatus] | None = None
    fault_at: float | None = None
    started_at: float = 0.0
    stall_window: bool = False
    idle_via_sse: bool = False
    no_recovery: bool = False
    recovered_once_by_abort: bool = False
    requests_before: int = 0
    pause_lifted: bool = False  # INV-18: a SIGSTOP lifted well before the stall deadline
    retry_active: bool = False  # INV-6: provider retry / child activity: active, never idle nor a stall
    one_connection: bool = False  # INV-8: a healthy stream with short gaps stays one connection
    cold_start: bool = False  # a silent bootstrap longer than stall_timeout: OK, never a stall
    notes: list[str] = field(default_factory=list)


class InvariantViolation(AssertionError):
    pass


def _wait_answer_seen(runner: TurnRunner, timeout: float) -> None:
    """Until the runner recorded the first event of the model's answer (a runner without a
    ``history`` is not waited for): the model streamed a chunk, but opencode publishes it a moment
    later, and a server frozen before that is still in its bootstrap (docs/recovery.md)."""
    history = getattr(runner, "history", None)
    if history is None:
        return
    from pytest_cbchaos.waiting import wait_until

    turn = max((h.get("turn", 0) for h in list(history)), default=0)
    wait_until(lambda: any(h.get("type") == "first_event" and h.get("turn") == turn for h in list(history)),
               timeout, "the runner to see the first event of the answer")


def _check(cond: bool, inv: str, msg: str, result: TurnResult | None = None) -> None:
    if not cond:
        raise InvariantViolation(f"{inv}: {msg}\nresult: {result!r}")


class RecoveryMachineBase(RuleBasedStateMachine):
    """Rules and invariants; bind an environment and runner factory with :func:`recovery_machine`."""

    env: RecoveryChaosEnv
    enabled: frozenset[str] = frozenset(FAULTS)
    runner_factory: Callable[..., TurnRunner] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.results: list[tuple[Expectation, TurnResult, float]] = []
        self.turn_no = 0
        self.env.clean()

    def teardown(self) -> None:
        self.env.clean()

    # -- helpers -------------------------------------------------------------------------------
    def _runner(self, **cfg: Any) -> TurnRunner:
        factory = self.runner_factory or self.env.make_runner
        return factory(**cfg)

    def _prompt(self, fault: str) -> str:
        self.turn_no += 1
        return f"cbchaos turn {self.turn_no} fault={fault} token-{time.monotonic_ns() % 10**9}"

    def _run(self, exp: Expectation, runner: TurnRunner,
             during: Callable[[TurnRunner], None] | None = None) -> TurnResult:
        import threading

        exp.requests_before = len(self.env.provider_main_requests())
        exp.started_at = time.monotonic()
        out: list[Any] = []

        def target() -> None:
            try:
                out.append(runner.run_turn(exp.prompt))
            except BaseException as exc:  # reported below as a violation
                out.append(exc)

        th = threading.Thread(target=target, name="cbchaos-machine-turn", daemon=True)
        th.start()
        try:
            if during is not None:
                during(runner)
        finally:
            th.join(exp.bound_s + 30)
            self.env.release_provider()
            th.join(10)
            runner.close()
        _check(not th.is_alive() and bool(out), "INV-20 bounded run", f"run_turn did not return ({exp.fault})")
        if isinstance(out[0], BaseException):
            raise out[0]
        res: TurnResult = out[0]
        self.results.append((exp, res, time.monotonic() - exp.started_at))
        return res

    def _expect(self, fault: str, budget: int, **kw: Any) -> Expectation:
        st_ = self.env.stall_timeout
        bound = (budget + 1) * (st_ + 20) + budget * 40
        return Expectation(fault, self._prompt(fault), budget, st_, bound, **kw)

    # -- rules: each is one turn with one fault ---------------------------------------------------
    @precondition(lambda self: "normal" in self.enabled)
    @rule()
    def normal_turn(self) -> None:
        exp = self._expect("normal", 1, final_status={RunStatus.OK}, no_recovery=True)
        self.env.script_text("all good", chunks=3)
        self._run(exp, self._runner(max_recoveries=1))

    @precondition(lambda self: "paced" in self.enabled)
    @rule(gap=st.floats(0.05, 0.4))
    def paced_turn_below_stall(self, gap: float) -> None:
        exp = self._expect("paced", 1, final_status={RunStatus.OK}, no_recovery=True)  # INV-6
        self.env.script_text("slow but steady", chunks=4, delay=gap)
        self._run(exp, self._runner(max_recoveries=1))

    @precondition(lambda self: "model_stall" in self.enabled)
    @rule()
    def model_stall(self) -> None:
        exp = self._expect("model_stall", 1, first_verdict=RunStatus.SESSION_STALLED, stall_window=True,
                           final_status={RunStatus.OK}, recovered_once_by_abort=True)
        self.env.script_stall("half an ans")
        self._run(exp, self._runner(max_recoveries=1))

    @precondition(lambda self: "budget_exhaustion" in self.enabled)
    @rule(budget=st.sampled_from([0, 1]))
    def budget_exhaustion(self, budget: int) -> None:
        exp = self._expect("budget_exhaustion", budget, first_verdict=RunStatus.SESSION_STALLED,
                           final_status={RunStatus.SESSION_STALLED})
        for _ in range(budget + 1):
            self.env.script_stall("never")
        self._run(exp, self._runner(max_recoveries=budget))

    @precondition(lambda self: "kill" in self.enabled)
    @rule()
    def kill_mid_turn(self) -> None:
        exp = self._expect("kill", 1, first_verdict=RunStatus.SERVER_UNREACHABLE, first_verdict_within_s=2.0,
                           final_status={RunStatus.OK})
        self.env.script_stall("dies here")

        def during(runner: TurnRunner) -> None:
            self.env.wait_provider_stalled(30)
            # killed after the runner saw the answer begin: mid-turn, past the bootstrap, so a runner
            # that lets the stall clock decide (M2) ends in stall_timeout, not at the 60 s first-event
            # deadline that pushed such a turn over the INV-20 bound before INV-4 was judged
            _wait_answer_seen(runner, 30)
            exp.fault_at = time.monotonic()
            mark = getattr(runner, "mark_fault", None)
            if callable(mark):
                mark(exp.fault_at)  # fault_to_verdict_s and its lag: INV-4 judged lag-aware (docs/recovery.md)
            self.env.kill_server()
        # death detection must not depend on stall_timeout; the restarted instance's cold first
        # turn runs on the first-event deadline, not on the stall clock (docs/recovery.md)
        self._run(exp, self._runner(max_recoveries=1), during)

    @precondition(lambda self: "sigstop_held" in self.enabled)
    @rule()
    def sigstop_held(self) -> None:
        exp = self._expect("sigstop_held", 0, first_verdict=RunStatus.SESSION_STALLED, stall_window=True,
                           final_status={RunStatus.SESSION_STALLED})  # INV-17 (budget 0: no restart)

        def during(runner: TurnRunner) -> None:
            self.env.wait_provider_stalled(30)
            _wait_answer_seen(runner, 30)  # frozen after the answer began: the stall clock applies
            self.env.pause_server()
        self.env.script_stall("frozen")
        try:
            self._run(exp, self._runner(max_recoveries=0), during)
        finally:
            self.env.resume_server()

    @precondition(lambda self: "pause_short" in self.enabled)
    @rule()
    def pause_short(self) -> None:
        exp = self._expect("pause_short", 1, final_status={RunStatus.OK}, no_recovery=True,
                           pause_lifted=True)  # INV-18
        self.env.script_stall("brief")

        def during(runner: TurnRunner) -> None:
            self.env.wait_provider_stalled(30)
            self.env.pause_server()
            time.sleep(0.5)  # noqa: fault window length, not synchronisation
            self.env.resume_server()
            self.env.release_provider()
        self._run(exp, self._runner(max_recoveries=1), during)

    @precondition(lambda self: "sse_silence" in self.enabled)
    @rule()
    def sse_silence(self) -> None:
        exp = self._expect("sse_silence", 1, final_status={RunStatus.OK}, no_recovery=True)  # INV-9
        self.env.script_stall("silent socket")

        def during(runner: TurnRunner) -> None:
            self.env.wait_provider_stalled(30)
            toxic = self.env.add_toxic("events", "timeout", timeout=0)
            time.sleep(2.6)  # noqa: fault window: longer than sse_silence_timeout (2 s)
            self.env.release_provider()
            time.sleep(0.3)  # noqa: the turn ends while the events plane is silent
            self.env.remove_toxic("events", toxic)
        self._run(exp, self._runner(max_recoveries=1, heartbeat_interval=1, sse_silence_timeout=2,
                                    sse_connect_timeout=1, idle_poll_interval=0,
                                    stall_timeout=max(self.env.stall_timeout, 6)), during)

    @precondition(lambda self: "events_reset" in self.enabled)
    @rule()
    def events_reset_before_idle(self) -> None:
        exp = self._expect("events_reset", 1, final_status={RunStatus.OK}, no_recovery=True)  # INV-7
        self.env.script_stall("reset me")

        def during(runner: TurnRunner) -> None:
            self.env.wait_provider_stalled(30)
            toxic = self.env.add_toxic("events", "reset_peer", timeout=0)
            self.env.release_provider()
            time.sleep(0.3)  # noqa: the final idle is published while the events plane resets
            self.env.remove_toxic("events", toxic)
        self._run(exp, self._runner(max_recoveries=1, idle_poll_interval=0), during)

    @precondition(lambda self: "subscribe_latency" in self.enabled)
    @rule(ms=st.sampled_from([800, 3000]))
    def subscribe_latency(self, ms: int) -> None:
        # INV-10: the events request reaches the server late; a prompt sent before the confirmed
        # subscription loses the whole turn from the stream
        exp = self._expect("subscribe_latency", 1, final_status={RunStatus.OK}, no_recovery=True,
                           idle_via_sse=True)
        self.env.script_text("quick", chunks=1)
        wait_idle = getattr(self.env, "wait_server_idle", None)
        # Forced, not timed: the events request is held at the proxy (removing a latency toxic
        # forwards the held bytes at once) and released after ``ms`` if no prompt reached the model
        # (a runner waiting for its subscription), or, if one did (prompt before subscribe), only
        # once the server finished that turn. An env without ``wait_server_idle`` gets a plain latency.
        held = 600_000 if wait_idle is not None else ms
        toxic = self.env.add_toxic("events", "latency", stream="upstream", latency=held)

        def gate(runner: TurnRunner) -> None:
            if wait_idle is None:
                return
            try:
                until = time.monotonic() + ms / 1000
                while time.monotonic() < until and len(self.env.provider_main_requests()) <= exp.requests_before:
                    time.sleep(0.02)  # bounded poll of the provider log
                if len(self.env.provider_main_requests()) > exp.requests_before:
                    wait_idle(exp.bound_s)
            finally:
                self.env.remove_toxic("events", toxic)

        try:
            # a runner whose stream missed the turn learns of it only from its probe at the first-event
            # deadline: keep that short (the shared server is warm) so the catch takes seconds, not 60
            self._run(exp, self._runner(max_recoveries=1, idle_poll_interval=0, sse_connect_timeout=ms / 1000 + 3,
                                        subscribe_timeout=ms / 1000 + 5, first_event_timeout=15), gate)
        finally:
            self.env.remove_toxic("events", toxic)

    @precondition(lambda self: "events_latency" in self.enabled)
    @rule(ms=st.sampled_from([300, 700]))
    def events_latency(self, ms: int) -> None:
        # INV-8: every event and heartbeat arrives late but well within sse_silence_timeout;
        # the stream stays one connection per attempt and the turn completes. The model pauses
        # 0.8 s between chunks: quiet reads longer than a read-timeout watchdog's 2 ticks (M4)
        # happen on every run, not only when the machine is slow, yet far below the silence timeout
        exp = self._expect("events_latency", 1, final_status={RunStatus.OK}, no_recovery=True, one_connection=True)
        self.env.script_text("late but steady", chunks=3, delay=0.8)
        toxic = self.env.add_toxic("events", "latency", latency=ms)
        try:
            self._run(exp, self._runner(max_recoveries=1, stall_timeout=max(self.env.stall_timeout, 6)))
        finally:
            self.env.remove_toxic("events", toxic)

    @precondition(lambda self: "control_latency" in self.enabled)
    @rule(ms=st.sampled_from([300, 900]))
    def control_latency(self, ms: int) -> None:
        exp = self._expect("control_latency", 1, final_status={RunStatus.OK}, no_recovery=True)  # INV-15
        self.env.script_text("slow control plane", chunks=2)
        toxic = self.env.add_toxic("control", "latency", latency=ms)
        try:
            self._run(exp, self._runner(max_recoveries=1))
        finally:
            self.env.remove_toxic("control", toxic)

    @precondition(lambda self: "provider_error" in self.enabled)
    @rule(code=st.sampled_from([429, 500, 503]))
    def provider_error(self, code: int) -> None:
        exp = self._expect("provider_error", 1, no_recovery=True,
                           final_status={RunStatus.OK, RunStatus.ERROR, RunStatus.INCOMPLETE})  # INV-16
        self.env.script_http_error(code, retry_after=1 if code == 429 else None)
        self.env.script_text("after the error", chunks=1)
        self._run(exp, self._runner(max_recoveries=1, stall_timeout=max(self.env.stall_timeout, 8)))

    # -- invariants ------------------------------------------------------------------------------
    @invariant()
    def last_turn_honest(self) -> None:
        if not self.results:
            return
        exp, res, elapsed = self.results[-1]
        check_turn(exp, res, elapsed, self.env.provider_main_requests()[exp.requests_before:])


def check_turn(exp: Expectation, res: TurnResult, elapsed: float, requests: list[Any], *,
               user_messages: int | None = None, open_event_connections: int | None = None) -> None:
    """All invariants (docs/recovery-design.md#invariants) that one turn's result and the provider log can show.

    Optional server-side evidence (when the environment can count it): ``user_messages`` = user
    messages the server created for ``exp.prompt`` in the final attempt's session (INV-14);
    ``open_event_connections`` = ``/event`` connections of this runner still open after
    ``run_turn`` returned and the consumer had its stop bound to close them (INV-11).
    """
    f = f"[{exp.fault}] "
    attempts = res.attempts
    _check(res.recoveries_used <= exp.max_recoveries, "INV-2 shared budget",
           f"{f}{res.recoveries_used} recoveries > max {exp.max_recoveries}", res)
    if attempts:
        _check(res.recoveries_used == len(attempts) - 1, "INV-2 shared budget",
               f"{f}{len(attempts)} attempts but {res.recoveries_used} recoveries charged", res)
    if res.budget_exhausted:
        _check(res.status in (RunStatus.SERVER_UNREACHABLE, RunStatus.SESSION_STALLED), "INV-3 exhaustion",
               f"{f}budget exhausted but status {res.status!r}", res)
    if exp.one_connection:
        conns = [a.sse_connections for a in attempts]
        _check(all(c == 1 for c in conns), "INV-8 stream kept",
               f"{f}/event connections per attempt {conns}, expected one each", res)
    if res.status == RunStatus.OK:
        _check(res.finish_reason in TERMINAL_OK_REASONS and res.idle_confirmed in ("sse", "status", "completion")
               and not res.budget_exhausted, "INV-1 honest success", f"{f}OK without terminal evidence", res)
        if attempts:
            _check(attempts[-1].verdict == RunStatus.OK, "INV-1 honest success",
                   f"{f}OK but the last attempt ended {attempts[-1].verdict!r}", res)
    if exp.pause_lifted:
        _check(res.status == RunStatus.OK and res.recoveries_used == 0, "INV-18 pause tolerance",
               f"{f}a short SIGSTOP/SIGCONT caused a recovery or a failure", res)
    if exp.no_recovery:
        _check(res.recoveries_used == 0, "INV-6/7/16 no false recovery", f"{f}recovered without cause", res)
    first = attempts[0] if attempts else None
    if exp.first_verdict is not None and first is not None:
        _check(first.verdict == exp.first_verdict, "INV-4/5/17 classification",
               f"{f}first attempt ended {first.verdict!r}, expected {exp.first_verdict!r}", res)
        if exp.first_verdict_within_s is not None and exp.fault_at is not None:
            latency = first.ended_at - exp.fault_at if first.ended_at else float("inf")
            verdict_lat = first.fault_to_verdict_s if first.fault_to_verdict_s is not None else latency
            lag = first.lag_s if first.fault_to_verdict_s is not None else None  # lag-aware (docs/recovery.md)
            _check(within(verdict_lat, lag, exp.first_verdict_within_s), "INV-4 fast death",
                   f"{f}death reported late: {judged_text(verdict_lat, lag, exp.first_verdict_within_s)}", res)
    # after the classification: a misjudged first attempt (a death left to a deadline) also makes the
    # turn long, and the verdict should name the cause, not only the overrun
    _check(elapsed <= exp.bound_s, "INV-20 bounded run", f"{f}turn took {elapsed:.1f}s > {exp.bound_s}s", res)
    if exp.stall_window and first is not None and first.verdict == RunStatus.SESSION_STALLED:
        age = first.evidence.get("last_progress_age_s")
        if age is not None:
            _check(exp.stall_timeout - 0.05 <= age and within(age, first.lag_s, exp.stall_timeout + 1.0),
                   "INV-5 bounded stall", f"{f}stall declared {age}s after the last progress (stall_timeout "
                   f"{exp.stall_timeout}; {judged_text(age, first.lag_s, exp.stall_timeout + 1.0)})", res)
    if exp.idle_via_sse and res.status == RunStatus.OK:
        _check(res.idle_confirmed == "sse", "INV-10 subscribe before prompt",
               f"{f}the stream missed the turn (idle confirmed by {res.idle_confirmed})", res)
    if res.recoveries_used and len(requests) >= 2:
        retried = requests[-1]
        _check(exp.prompt in retried.user_text(), "INV-13 full retry prompt",
               f"{f}retry prompt lacks the original prompt: {retried.user_text()[:200]!r}", res)
    if exp.recovered_once_by_abort and len(attempts) >= 2 and len(requests) >= 2:
        stalled, retried = requests[0], requests[-1]
        same_generation = attempts[0].generation == attempts[1].generation
        if same_generation:
            _check(stalled.client_closed_at is not None and stalled.client_closed_at <= retried.received_at,
                   "INV-12 abort before retry", f"{f}stalled request still open when the retry arrived", res)
    _check(all(a.verdict != RunStatus.ERROR or a.reason != "consumer_leak" for a in attempts),
           "INV-11 one consumer", f"{f}consumer leaked", res)
    if open_event_connections is not None:
        _check(open_event_connections == 0, "INV-11 one consumer",
               f"{f}{open_event_connections} /event connection(s) still open after run_turn returned", res)
    if user_messages is not None:
        _check(user_messages == 1, "INV-14 no double prompt",
               f"{f}{user_messages} user messages for one intended prompt", res)
    _check_control_plane(exp, res)
    if exp.retry_active:
        _check(res.status == RunStatus.OK and res.recoveries_used == 0
               and all(a.verdict not in (RunStatus.SESSION_STALLED, RunStatus.INCOMPLETE) for a in attempts),
               "INV-6 no false stall", f"{f}a provider retry period or child-session activity ended the turn early", res)
    if exp.cold_start:
        _check(res.status == RunStatus.OK and res.recoveries_used == 0
               and all(a.verdict != RunStatus.SESSION_STALLED for a in attempts),
               "cold start is not a stall", f"{f}a silent bootstrap before the first event ended an attempt", res)
    if exp.final_status is not None:
        _check(res.status in exp.final_status, "expected outcome",
               f"{f}status {res.status!r}, expected one of {sorted(s.name for s in exp.final_status)}", res)


def _check_control_plane(exp: Expectation, res: TurnResult) -> None:
    """INV-15: a 4xx (or bad answer) from the control plane is ``ERROR`` without recovery."""
    f = f"[{exp.fault}] "
    for i, a in enumerate(res.attempts):
        status = (a.evidence or {}).get("http_status") if a.reason == "request_error" else None
        if a.reason == "request_error":
            _check(a.verdict == RunStatus.ERROR and i == len(res.attempts) - 1, "INV-15 control-plane classification",
                   f"{f}non-retriable request error (HTTP {status}) was recovered or not ERROR", res)
        if isinstance(status, int) and 400 <= status < 500:
            _check(res.status == RunStatus.ERROR and not res.budget_exhausted, "INV-15 control-plane classification",
                   f"{f}HTTP {status} from the control plane must end as ERROR without recovery", res)
        if a.verdict == RunStatus.SERVER_UNREACHABLE and isinstance(a.evidence, dict):
            st = a.evidence.get("http_status")
            _check(not (isinstance(st, int) and 400 <= st < 500 and st not in (408, 429)),
                   "INV-15 control-plane classification", f"{f}HTTP {st} classified as unreachable", res)


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and their targets (Linux ``/proc``)."""
    import os

    out: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the listing's own fd, or one closed meanwhile
    return out


def stray_processes(server: Any) -> list[int]:
    """Live (non-zombie) processes of any generation of a launcher handle, found by the env tag
    ``CBCHAOS_SERVER_TAG=<uid>.g<N>`` every descendant inherits: tool-call children that left the
    server's process group or were orphaned by a SIGKILL included. ``[]`` for a handle without a tag."""
    import os

    import psutil

    from pytest_cbchaos.servers.opencode import TAG_ENV

    uid = getattr(server, "_uid", None)
    if not isinstance(uid, str) or not uid:
        return []
    prefix = f"{uid}.g"
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(TAG_ENV, "").startswith(prefix):
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to read
    return found


def log_holders(paths: Iterable[Any]) -> list[tuple[int, str]]:
    """(pid, path) of every process on the machine that has one of ``paths`` open."""
    import psutil

    wanted = {str(p) for p in paths}
    held = []
    for proc in psutil.process_iter(["pid"]):
        try:
            held += [(proc.pid, f.path) for f in proc.open_files() if f.path in wanted]
        except (psutil.Error, OSError):
            continue
    return held


def check_clean_teardown(server: Any, *, fd_baseline: int | None = None, slack: int = 2) -> None:
    """INV-19 for a launcher handle after ``stop()``: no process of any generation alive (process
    scan by env tag, tool-call subprocesses included), every generation's log closed by the parent
    and holding its exit record, fd count flat."""
    import os

    _check(not getattr(server, "alive", False), "INV-19 clean teardown", f"{server!r} still alive after stop()")
    strays = stray_processes(server)
    _check(not strays, "INV-19 clean teardown",
           f"process(es) of {server!r} outlived stop() (tool-call children included): {strays}")
    logs = [str(p) for p in getattr(server, "log_paths", [])]
    held = sorted({t for t in open_fds().values() if t in logs})
    _check(not held, "INV-19 clean teardown", f"parent still holds log handle(s): {held}")
    for path in logs:
        text = ""
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        _check("cbchaos exit:" in text, "INV-19 clean teardown", f"log {path} lacks its exit record")
    if fd_baseline is not None:
        now = len(open_fds())
        _check(now <= fd_baseline + slack, "INV-19 clean teardown",
               f"fd count grew from {fd_baseline} to {now} (slack {slack})")


def recovery_machine(env: RecoveryChaosEnv, *, enabled: Iterable[str] | None = None,
                     runner_factory: Callable[..., TurnRunner] | None = None) -> type[RecoveryMachineBase]:
    """A machine class bound to ``env`` (and optionally to a user's runner factory)."""
    chosen = frozenset(enabled) if enabled is not None else frozenset(FAULTS)
    unknown = chosen - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown recovery machine faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
    return bind_machine("RecoveryMachine", RecoveryMachineBase,
                        {"env": env, "enabled": chosen, "runner_factory": staticmethod(runner_factory)
                         if runner_factory else None})
