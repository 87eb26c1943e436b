"""Deliberately broken recovery runners (mutants of docs/recovery-design.md#invariants) the stall-recovery machine
must catch.

Each is a :class:`~pytest_cbchaos.recovery.RecoveryRunner` with one flaw of the prior art:

* ``M1SuccessAfterExhaustion`` reports OK after the budget ran out;
* ``M2StallBeforeLiveness`` checks stall before liveness and only trusts liveness late, so a
  dead server is reported as a stall;
* ``M3PromptBeforeSubscribe`` sends the prompt before ``server.connected`` arrived;
* ``M5RetryWithoutAbort`` retries a stalled turn on the same server without aborting it;
* ``M9ResumeNoteOnly`` retries with a resume note instead of the original prompt;
* ``M4ReadTimeoutWatchdog`` drops the stream whenever a read is quiet for two ticks;
* ``M6HeartbeatAsProgress`` lets heartbeats push the stall deadline out (a stall is never seen);
* ``M7RetryAsIdle`` treats a provider ``retry`` status as the end of the turn;
* ``M8ConsumerNotAwaited`` returns from an attempt while its ``/event`` reader still runs;
* ``M10PerClassBudgets`` keeps one budget per verdict class instead of one shared budget;
* ``M11PromptResent`` resends prompt_async after a timeout although it had been accepted;
* ``M12LogHandleKept`` (a launcher, not a runner) keeps every generation's log handle open;
* ``M13ToolChildOrphaned`` (a launcher) stops only the server's process group, so a tool-call child
  in its own session (opencode's bash tool detaches) outlives ``stop()``;
* ``M17CleanupOnlyIfOldSeen`` (a launcher) cleans up the replaced generation's children only while
  its old process is still there (running or an unreaped zombie): after a generation that was
  already reaped, a restart leaves its tool-call child alive;
* ``M14ClientErrorRecovered`` counts every control-plane failure, a 4xx included, as server death
  and recovers it (restart and retry) instead of ending ``ERROR``;
* ``M15StallClockAtAcceptance`` starts the stall clock at prompt acceptance, so a cold server's
  silent bootstrap is taken for a stall;
* ``M16LateDetection`` decides a stall or a dead server late: only after ``late_factor *
  stall_timeout`` seconds of lag-free time (on the runner's own lag sampler) past the moment the
  real watchdog decides, so ``measured - observed lag`` exceeds that lateness under any load
  (docs/recovery.md, "Lag-aware deadlines").
"""

from __future__ import annotations

import time
from typing import Any

from pytest_cbchaos.recovery.client import OpencodeRequestError
from pytest_cbchaos.recovery.facade import RecoveryRunner
from pytest_cbchaos.recovery.attempt import Attempt
from pytest_cbchaos.recovery.status import RunStatus, TurnResult, Verdict
from pytest_cbchaos.recovery.supervisor import AsyncRecoveryRunner
from pytest_cbchaos.recovery.watchdog import Watchdog
from pytest_cbchaos.servers.opencode import OpencodeServer


class _M1Core(AsyncRecoveryRunner):
    def _finalize(self, verdict: Verdict, attempt: Attempt, records: list, used: int, exhausted: bool,
                  error: str | None = None) -> TurnResult:
        res = super()._finalize(verdict, attempt, records, used, exhausted, error)
        if exhausted:
            res.status, res.error = RunStatus.OK, None  # the prior art's "exit 0" after exhaustion
        return res


class _M2Watchdog(Watchdog):
    check_order = ("interrupted", "completion", "stall", "hard_cap")  # liveness never consulted per tick


class _M2Attempt(Attempt):
    watchdog_class = _M2Watchdog

    def _is_dead(self) -> bool:
        return False  # stream errors never trigger a liveness check either


class _M2Core(AsyncRecoveryRunner):
    attempt_class = _M2Attempt


class _M3Attempt(Attempt):
    prompt_before_subscribe = True


class _M3Core(AsyncRecoveryRunner):
    attempt_class = _M3Attempt


class _M5Core(AsyncRecoveryRunner):
    async def _recover(self, verdict: Verdict, attempt: Attempt) -> str | None:
        if verdict.status == RunStatus.SESSION_STALLED:
            return None  # retry at once on the same server; the stalled turn keeps running
        return await super()._recover(verdict, attempt)


class _M9Core(AsyncRecoveryRunner):
    def retry_prompt(self, prompt: str, attempt_n: int) -> str:
        return "The previous attempt was interrupted. Continue where you left off."


class M1SuccessAfterExhaustion(RecoveryRunner):
    async_class = _M1Core


class M2StallBeforeLiveness(RecoveryRunner):
    async_class = _M2Core


class M3PromptBeforeSubscribe(RecoveryRunner):
    async_class = _M3Core


class M5RetryWithoutAbort(RecoveryRunner):
    async_class = _M5Core


class M9ResumeNoteOnly(RecoveryRunner):
    async_class = _M9Core


MUTANTS: dict[str, type[RecoveryRunner]] = {
    "M1": M1SuccessAfterExhaustion, "M2": M2StallBeforeLiveness, "M3": M3PromptBeforeSubscribe,
    "M5": M5RetryWithoutAbort, "M9": M9ResumeNoteOnly,
}

__all__ = ["MUTANTS", *[cls.__name__ for cls in MUTANTS.values()]]


def make_mutant(name: str, server: Any, config: Any = None, **kwargs: Any) -> RecoveryRunner:
    return MUTANTS[name](server, config, **kwargs)


# -- M6, M7, M8, M10, M11 (shown against the scripted fake server in
# tests/recovery/test_recovery_mutants_extra.py; the machine's check_turn catches each) -----------

class _M4Watchdog(Watchdog):
    """The prior art's watchdog on a socket read timeout: a read quiet for ``read_timeout`` drops
    the stream (CPython refuses further reads on a timed-out socket), every time."""

    read_timeout_ticks = 2

    async def tick(self, now: float) -> None:
        s = self.a.stream
        if s.last_byte_at is not None and now - s.last_byte_at >= self.read_timeout_ticks * self.cfg.tick:
            s.force_reconnect("read_timeout")
        await super().tick(now)


class _M4Attempt(Attempt):
    watchdog_class = _M4Watchdog


class _M4Core(AsyncRecoveryRunner):
    attempt_class = _M4Attempt


class _M6Watchdog(Watchdog):
    """Heartbeats counted as progress: every heartbeat pushes the stall deadline out."""

    def deadline(self) -> float:
        t, hb = self.a.tracker, self.a.stream.last_heartbeat_at
        if t is not None and hb is not None and t.prompt_accepted_at is not None \
                and hb > (t.last_progress_at or t.prompt_accepted_at):
            t.last_progress_at = hb
        return super().deadline()


class _M6Attempt(Attempt):
    watchdog_class = _M6Watchdog


class _M6Core(AsyncRecoveryRunner):
    attempt_class = _M6Attempt


class _M7Attempt(Attempt):
    """``retry`` status treated as idle (the prior art's "neither busy nor idle" bug, made terminal)."""

    def _on_event(self, event: dict[str, Any]) -> None:
        props = event.get("properties") or {}
        st = props.get("status") if isinstance(props, dict) else None
        if event.get("type") == "session.status" and isinstance(st, dict) and st.get("type") == "retry":
            event = {**event, "properties": {**props, "status": {"type": "idle"}}}
        super()._on_event(event)


class _M7Core(AsyncRecoveryRunner):
    attempt_class = _M7Attempt


class _M8Attempt(Attempt):
    """Consumer not awaited: the attempt returns while its ``/event`` reader keeps running."""

    async def _stop_consumer(self, watch_task: Any) -> None:
        if self.verdict is None:
            self.decide(RunStatus.ERROR, "cancelled", {})
        for task in ([watch_task] if watch_task else []) + list(self.tasks):
            task.cancel()
        self.record.sse_connections = self.stream.connections
        self.log("consumer.stopped", leaked=0)  # the stream is abandoned, not stopped
        self.open = False
        self.runner.__dict__.setdefault("abandoned", []).append(self.stream)


class _M8Core(AsyncRecoveryRunner):
    attempt_class = _M8Attempt

    async def aclose(self) -> None:
        for stream in self.__dict__.pop("abandoned", []):  # only so the test process stays clean
            await stream.stop()
        await super().aclose()


class _M10Core(AsyncRecoveryRunner):
    _per_class = True  # one budget per verdict class instead of one shared budget


class _M11Attempt(Attempt):
    """prompt_async resent after a timeout although the server had accepted it."""

    async def _send_prompt(self, sid: str) -> None:
        t = self.tracker
        assert t is not None
        t.prompt_sent_at = time.monotonic()
        self.log("prompt.sent", session_id=sid, subscribed=self.stream.subscribed.is_set())
        try:
            await self.client.call("prompt_async",
                                   lambda: self.client.prompt_async(sid, self.prompt, self.runner.model),
                                   is_dead=self._is_dead)  # no "accepted already?" check
        except OpencodeRequestError as exc:
            self.log("prompt.failed", error=str(exc))
            self._request_failed(exc)
            return
        t.prompt_accepted_at = time.monotonic()
        self.log("prompt.accepted", session_id=sid)
        self.resubscribed = True


class _M11Core(AsyncRecoveryRunner):
    attempt_class = _M11Attempt


class M4ReadTimeoutWatchdog(RecoveryRunner):
    async_class = _M4Core


class M6HeartbeatAsProgress(RecoveryRunner):
    async_class = _M6Core


class M7RetryAsIdle(RecoveryRunner):
    async_class = _M7Core


class M8ConsumerNotAwaited(RecoveryRunner):
    async_class = _M8Core


class M10PerClassBudgets(RecoveryRunner):
    async_class = _M10Core


class M11PromptResent(RecoveryRunner):
    async_class = _M11Core


class _M14Attempt(Attempt):
    """Every control-plane failure taken for server death (the prior art's blanket classification)."""

    def _request_failed(self, exc: OpencodeRequestError) -> None:
        exc.retriable = True  # the bug: a 4xx (a caller's error) becomes "unreachable" and is recovered
        super()._request_failed(exc)


class _M14Core(AsyncRecoveryRunner):
    attempt_class = _M14Attempt


class M14ClientErrorRecovered(RecoveryRunner):
    async_class = _M14Core


class _M15Watchdog(Watchdog):
    def deadline(self) -> float:
        t, cfg = self.a.tracker, self.cfg
        base = t.last_progress_at or t.prompt_accepted_at or time.monotonic()  # no bootstrap phase
        return base + (cfg.effective_tool_stall_timeout if t.running_tools else cfg.stall_timeout)


class _M15Attempt(Attempt):
    watchdog_class = _M15Watchdog


class _M15Core(AsyncRecoveryRunner):
    attempt_class = _M15Attempt


class M15StallClockAtAcceptance(RecoveryRunner):
    async_class = _M15Core


class _M16Watchdog(Watchdog):
    late_factor = 2.0

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt)
        self._due_since: dict[str, float] = {}

    def _late_enough(self, what: str, now: float) -> bool:
        """True once ``late_by`` seconds of time the loop actually ran have passed since ``what`` was due."""
        since = self._due_since.setdefault(what, now)
        late_by = self.late_factor * (self.cfg.stall_timeout or self.cfg.bootstrap_timeout)
        return (now - since) - self.a.runner.lag.window(since, now).sum_s >= late_by

    async def _check_liveness(self, now: float) -> None:
        from pytest_cbchaos.recovery.status import Liveness

        if self.a.liveness() == Liveness.DEAD and not self._late_enough("dead", now):
            return
        await super()._check_liveness(now)

    async def _check_stall(self, now: float) -> None:
        t = self.a.tracker
        if t.prompt_accepted_at is not None and t.completed_at is None and now >= self.deadline() \
                and not self._late_enough(f"stall@{self.deadline()}", now):
            self._collect_probe(now)
            return
        await super()._check_stall(now)


class _M16Attempt(Attempt):
    watchdog_class = _M16Watchdog


class _M16Core(AsyncRecoveryRunner):
    attempt_class = _M16Attempt


class M16LateDetection(RecoveryRunner):
    async_class = _M16Core


MUTANTS.update({"M4": M4ReadTimeoutWatchdog, "M6": M6HeartbeatAsProgress, "M7": M7RetryAsIdle, "M8": M8ConsumerNotAwaited,
                "M10": M10PerClassBudgets, "M11": M11PromptResent, "M14": M14ClientErrorRecovered,
                "M15": M15StallClockAtAcceptance, "M16": M16LateDetection})
__all__ = ["MUTANTS", *[cls.__name__ for cls in MUTANTS.values()]]


# -- M12: the launcher side of the prior art (INV-19) --------------------------------------------

class M12LogHandleKept(OpencodeServer):
    """Keeps its own handle on every generation's log open (the prior art leaked one per restart).

    Caught by :func:`pytest_cbchaos.stateful.recovery_machine.check_clean_teardown`. Call
    :meth:`release_leaked` afterwards: the suite treats an unclosed file as an error.
    """

    def start(self) -> "M12LogHandleKept":
        super().start()
        self.__dict__.setdefault("_leaked", []).append(open(self.log_path, "ab"))  # noqa: SIM115 - the bug
        return self

    def release_leaked(self) -> None:
        for fh in self.__dict__.pop("_leaked", []):
            fh.close()


class M13ToolChildOrphaned(OpencodeServer):
    """Stops only the server's process group: no descendant list, no scan for its env tag.

    opencode's bash tool runs its command in a session of its own, so after a SIGKILL of the server
    that ``sleep 300`` is orphaned and this launcher never finds it. Caught by the process scan of
    :func:`pytest_cbchaos.stateful.recovery_machine.check_clean_teardown`. Call
    :meth:`reap_orphans` afterwards so the test leaves nothing behind.
    """

    def _stop_proc(self, proc: Any) -> None:
        if proc.pid is None:
            return
        requested = proc.alive
        proc.stop()  # graceful hook, wait stop_grace, SIGKILL the group, reap: the bug is what is missing
        self._exit_record(proc, requested=requested)

    def reap_orphans(self, timeout: float = 5.0) -> list[int]:
        """SIGKILL every live process carrying one of this server's env tags; returns their pids."""
        import os
        import signal

        from pytest_cbchaos.stateful.recovery_machine import stray_processes

        pids = stray_processes(self)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while stray_processes(self) and time.monotonic() < deadline:
            time.sleep(0.02)  # the kernel finishes the kill asynchronously; bounded poll
        return pids


class M17CleanupOnlyIfOldSeen(M13ToolChildOrphaned):
    """Full cleanup (descendants, env-tag scan) only while the old generation's pid still exists; a
    generation already reaped when the restart comes gets the group kill alone, and its tool-call
    child (own session) survives. Whether a real restart meets the dead generation reaped depends on
    who polled it first, so the test reaps it first (docs/recovery.md, INV-19)."""

    def _stop_proc(self, proc: Any) -> None:
        import psutil

        if proc.pid is not None and psutil.pid_exists(proc.pid):
            OpencodeServer._stop_proc(self, proc)
        else:
            super()._stop_proc(proc)
