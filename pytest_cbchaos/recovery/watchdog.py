"""The stall watchdog: a timer task, independent of the stream (docs/recovery-design.md#stall-watchdog).

Every ``tick`` on the monotonic clock it checks, in order: interrupted → liveness → completion →
stall → hard cap, and keeps the stream healthy (silence / unconfirmed subscription). It never
reads the socket and never closes a healthy stream. Probes (status + message sync) start
``probe_timeout + tick`` before the stall deadline so the verdict is ready on time.

Until the first event of the model's answer (bootstrap) the deadline is ``bootstrap_timeout``
after prompt acceptance, not ``stall_timeout``: a freshly started server is silent for seconds on
its first turn (docs/recovery.md, "Cold start"). Liveness is checked every tick in both phases.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from pytest_cbchaos.recovery.client import OpencodeRequestError
from pytest_cbchaos.recovery.status import Liveness, RunStatus, Verdict, status_for_reason

if TYPE_CHECKING:
    from pytest_cbchaos.recovery.attempt import Attempt


class Watchdog:
    # mutants override the check order (M2: stall before liveness)
    check_order = ("interrupted", "liveness", "completion", "stall", "hard_cap")

    def __init__(self, attempt: "Attempt") -> None:
        self.a = attempt
        self.cfg = attempt.config
        self._probe: asyncio.Task[dict[str, Any]] | None = None
        self._probe_started_at = 0.0
        self._stall_probe_for: float | None = None
        self._last_poll_at = 0.0
        self.poll_results: list[dict[str, Any]] = []

    async def run(self) -> None:
        a = self.a
        try:
            while a.verdict is None:
                try:
                    await asyncio.wait_for(a.wake.wait(), self.cfg.tick)
                except asyncio.TimeoutError:
                    pass
                a.wake.clear()
                await self.tick(time.monotonic())
        finally:
            if self._probe is not None and not self._probe.done():
                self._probe.cancel()
                try:
                    await self._probe
                except (asyncio.CancelledError, Exception):
                    pass

    async def tick(self, now: float) -> None:
        a = self.a
        a.stream.maintain(now)
        for check in self.check_order:
            if a.verdict is not None:
                return
            await getattr(self, f"_check_{check}")(now)

    # -- checks ----------------------------------------------------------------------------
    async def _check_interrupted(self, now: float) -> None:
        if self.a.interrupted:
            self.a.decide(RunStatus.INTERRUPTED, "interrupted", {})

    async def _check_liveness(self, now: float) -> None:
        a = self.a
        state = a.liveness()
        a.last_liveness = state
        if state == Liveness.DEAD:
            a.decide(RunStatus.SERVER_UNREACHABLE, "server_unreachable", {"liveness": "dead"})
        elif a.sse_unavailable:
            a.decide(RunStatus.SERVER_UNREACHABLE, "server_unreachable",
                     {"cause": "sse_unavailable", "drops": a.stream.drops[-3:]})

    async def _check_completion(self, now: float) -> None:
        a, t = self.a, self.a.tracker
        if t.idle_seen_at is not None:
            await a.finish_from_idle("sse")
            return
        self._collect_probe(now)
        if a.verdict is not None:
            return
        if t.completed_at is not None and now - t.completed_at >= self.cfg.idle_grace:
            res = await self._probe_now()
            if res.get("status_error") or t.session_id not in res.get("status", {t.session_id: 1}):
                await a.finish_from_idle("completion" if res.get("status_error") else "status")
                return
        due = a.resubscribed or (self.cfg.idle_poll_interval > 0
                                 and now - self._last_poll_at >= self.cfg.idle_poll_interval)
        if due and self._probe is None and t.prompt_accepted_at is not None:
            a.resubscribed = False
            self._start_probe(now, "poll")

    async def _check_stall(self, now: float) -> None:
        a, t, cfg = self.a, self.a.tracker, self.cfg
        if t.prompt_accepted_at is None or t.completed_at is not None:
            return
        if not cfg.stall_timeout and not self.bootstrapping():
            return  # stall detection off; the first-event deadline always applies
        deadline = self.deadline()
        if now >= deadline - cfg.probe_timeout - cfg.tick and self._stall_probe_for != deadline:
            if self._probe is not None and not self._probe.done():
                pass  # a running probe serves the deadline as well
            else:
                self._probe = None
                self._start_probe(now, "stall")
            self._stall_probe_for = deadline
        if now < deadline:
            return
        if self._probe is not None and not self._probe.done():
            await asyncio.wait({self._probe}, timeout=max(0.0, self._probe_started_at + cfg.probe_timeout - now))
        res = self._collect_probe(now) or {}
        if a.verdict is not None or self.deadline() > deadline:
            return  # the probe showed idle or progress
        if self.bootstrapping():
            a.decide(RunStatus.SESSION_STALLED, "first_event_timeout", {
                "first_event_wait_s": round(now - (t.prompt_accepted_at or now), 3),
                "bootstrap_timeout_s": cfg.bootstrap_timeout,
                "probe": res, "liveness": a.last_liveness.value, "active": t.active})
            return
        a.decide(RunStatus.SESSION_STALLED, "session_stalled", {
            "last_progress_age_s": round(now - (t.last_progress_at or t.prompt_accepted_at), 3),
            "heartbeat_age_s": None if a.stream.last_heartbeat_at is None
            else round(now - a.stream.last_heartbeat_at, 3),
            "probe": res, "liveness": a.last_liveness.value, "active": t.active})

    async def _check_hard_cap(self, now: float) -> None:
        a = self.a
        if self.cfg.max_turn_seconds and a.tracker.prompt_accepted_at is not None \
                and now - a.tracker.prompt_accepted_at >= self.cfg.max_turn_seconds:
            a.decide(RunStatus.INCOMPLETE, "turn_timeout", {"max_turn_seconds": self.cfg.max_turn_seconds})

    # -- deadlines and probes ----------------------------------------------------------------
    def bootstrapping(self) -> bool:
        """No sign of the model's answer yet (event or synced part): the first-event deadline applies."""
        return self.a.tracker.first_event_at is None

    def deadline(self) -> float:
        t, cfg = self.a.tracker, self.cfg
        if self.bootstrapping():
            deadline = (t.prompt_accepted_at or time.monotonic()) + cfg.bootstrap_timeout
        else:
            timeout = cfg.effective_tool_stall_timeout if t.running_tools else cfg.stall_timeout
            deadline = max(t.last_progress_at or 0.0, t.first_event_at or 0.0) + timeout
        if t.retry_until is not None:
            deadline = max(deadline, t.retry_until + cfg.stall_timeout)
        return deadline

    def _start_probe(self, now: float, why: str) -> None:
        self._probe_started_at = now
        self._last_poll_at = now
        self._probe = asyncio.get_running_loop().create_task(self.a.probe(why))

    async def _probe_now(self) -> dict[str, Any]:
        if self._probe is not None and not self._probe.done():
            await asyncio.wait({self._probe})
            res = self._collect_probe(time.monotonic()) or {}
        else:
            res = await self.a.probe("completion")
        return res

    def _collect_probe(self, now: float) -> dict[str, Any] | None:
        """Evaluate a finished probe: idle via status, lost events, turn not started."""
        if self._probe is None or not self._probe.done():
            return None
        task, self._probe = self._probe, None
        try:
            res = task.result()
        except (asyncio.CancelledError, Exception) as exc:
            return {"error": repr(exc)}
        self.poll_results.append(res)
        a, t = self.a, self.a.tracker
        if res.get("sync_new_parts"):
            t.last_progress_at = now  # the stream silently lost events: progress, replace the stream
            a.stream.force_reconnect("sync_showed_lost_events")
        status = res.get("status")
        if isinstance(status, dict) and t.session_id not in status:
            if t.completed_at is not None:
                a.spawn_finish("status")
            elif not t.assistants and t.prompt_accepted_at is not None and not self.bootstrapping() \
                    and now - t.prompt_accepted_at >= self.cfg.start_timeout:
                # while bootstrapping a cold server lists no session either: the first-event deadline decides
                if t.session_errors:
                    a.decide(RunStatus.ERROR, "provider_error", {"errors": t.session_errors[-3:]})
                else:
                    a.decide(RunStatus.INCOMPLETE, "turn_not_started", {"status": status})
            elif t.assistants and t.user_message_id is not None and res.get("messages_ok") \
                    and t.finish_reason is not None and status_for_reason(t.finish_reason) != RunStatus.OK:
                a.spawn_finish("status")  # idle with a failure reason
        return res
