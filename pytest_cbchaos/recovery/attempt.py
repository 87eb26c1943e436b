"""One attempt at a turn: liveness → subscribe → create → baseline → prompt → watch
(docs/recovery-design.md#attempt)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from pytest_cbchaos.recovery.client import OpencodeRequestError
from pytest_cbchaos.recovery.sse import EventStream
from pytest_cbchaos.recovery.status import (AttemptRecord, Liveness, RunStatus, TERMINAL_OK_REASONS, Verdict,
                                             status_for_reason)
from pytest_cbchaos.recovery.tracker import TurnTracker
from pytest_cbchaos.recovery.watchdog import Watchdog

if TYPE_CHECKING:
    from pytest_cbchaos.recovery.supervisor import AsyncRecoveryRunner


class ConsumerConflict(RuntimeError):
    """A second consumer was requested for a (server, session) that already has one."""


class _ConsumerRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[tuple[str, str], int] = {}

    def acquire(self, server: str, session_id: str, owner: int) -> None:
        with self._lock:
            key = (server, session_id)
            if key in self._live:
                raise ConsumerConflict(f"session {session_id} on server {server} already has a consumer "
                                       f"(attempt {self._live[key]})")
            self._live[key] = owner

    def release(self, server: str, session_id: str) -> None:
        with self._lock:
            self._live.pop((server, session_id), None)

    def live(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._live)


CONSUMERS = _ConsumerRegistry()


class Attempt:
    """State of one attempt; the watchdog and the stream callbacks decide its verdict."""

    watchdog_class = Watchdog
    prompt_before_subscribe = False  # M3 mutant flips this

    def __init__(self, runner: "AsyncRecoveryRunner", n: int, prompt: str, session_id: str | None) -> None:
        self.runner, self.n, self.prompt, self.resume_id = runner, n, prompt, session_id
        self.config = runner.config
        self.target = runner.target
        self.client = runner.client
        self.verdict: Verdict | None = None
        self.wake = asyncio.Event()
        self.tracker: TurnTracker | None = None
        self.interrupted = False
        self.resubscribed = False
        self.sse_unavailable = False
        self.last_liveness = Liveness.UNKNOWN
        self.tasks: set[asyncio.Task[Any]] = set()
        self._finishing = False
        self.open = True
        self.record = AttemptRecord(n=n, generation=self.target.generation, prompt=prompt,
                                    started_at=time.monotonic())
        self.stream = EventStream(self.target, self.config, runner.http, on_event=self._on_event,
                                  on_subscribed=self._on_subscribed, on_drop=self._on_drop,
                                  is_dead=self._is_dead, on_unavailable=self._on_unavailable)
        self.watchdog = self.watchdog_class(self)

    # -- bookkeeping -------------------------------------------------------------------------
    def log(self, kind: str, **fields: Any) -> None:
        if self.open:
            self.runner.record(kind, attempt=self.n, **fields)

    def decide(self, status: RunStatus, reason: str, evidence: dict[str, Any],
               idle_confirmed: str | None = None) -> None:
        if self.verdict is None:
            self.verdict = Verdict(status, reason, evidence, time.monotonic(), idle_confirmed)
            self.wake.set()

    def liveness(self) -> Liveness:
        state = self.target.liveness()
        if state == Liveness.UNKNOWN and not self.target.has_process:
            state = self.runner.external_liveness()
        return state

    def _is_dead(self) -> bool:
        return self.liveness() == Liveness.DEAD

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def spawn_finish(self, kind: str) -> None:
        if not self._finishing:
            self.spawn(self.finish_from_idle(kind))

    # -- stream callbacks ----------------------------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
        if not self.open or self.tracker is None:
            return
        t = self.tracker
        bootstrapping = t.first_event_at is None
        t.handle(event)
        if bootstrapping and t.first_event_at is not None:
            since = t.prompt_accepted_at or t.prompt_sent_at or t.first_event_at
            part = (event.get("properties") or {}).get("part")
            self.log("first_event", event=event.get("type"), after_s=round(t.first_event_at - since, 3),
                     part=part.get("type") if isinstance(part, dict) else None)
        if t.permissions:
            for req in t.permissions:
                self.spawn(self._answer_permission(req))
            t.permissions.clear()
        if t.idle_seen_at is not None:
            self.wake.set()

    def _on_subscribed(self, count: int) -> None:
        self.record.sse_connections = self.stream.connections
        self.log("subscribe.confirmed", subscription=count)
        if count > 1:
            self.resubscribed = True  # rebuild state by probe and sync (no replay)
            self.wake.set()

    def _on_drop(self, cause: str) -> None:
        silent_since = self.stream.last_byte_at if cause == "silence" else None
        lag = {} if silent_since is None else self.runner.lag.window(silent_since).to_dict()
        self.log("sse.reconnect", cause=cause, **lag)
        self.wake.set()  # liveness runs right after any stream error

    def _on_unavailable(self, cause: str) -> None:
        if not self.target.has_process or not self.config.stall_timeout:
            self.sse_unavailable = True
            self.wake.set()

    async def _answer_permission(self, req: dict[str, Any]) -> None:
        rid = req.get("id")
        if not isinstance(rid, str):
            return
        try:
            await self.client.permission_reply(rid, self.config.permission_policy)
            self.log("permission.reply", id=rid, reply=self.config.permission_policy)
        except OpencodeRequestError as exc:
            self.log("permission.reply_failed", id=rid, error=str(exc))  # left to the stall watchdog

    # -- probes ------------------------------------------------------------------------------
    async def probe(self, why: str) -> dict[str, Any]:
        """Status probe and message sync together, each under ``probe_timeout``."""
        t0 = time.monotonic()
        tracker = self.tracker
        assert tracker is not None
        status_res, msg_res = await asyncio.gather(
            self.client.status(timeout=self.config.probe_timeout),
            self.client.messages(tracker.session_id, timeout=self.config.probe_timeout),
            return_exceptions=True)
        out: dict[str, Any] = {"why": why, "ms": round((time.monotonic() - t0) * 1000, 1)}
        if isinstance(status_res, BaseException):
            out["status_error"] = str(status_res)
        else:
            out["status"] = status_res
            st = status_res.get(tracker.session_id)
            if isinstance(st, dict) and st.get("type") in ("busy", "retry"):
                tracker.active = True
        if isinstance(msg_res, BaseException):
            out["messages_error"] = str(msg_res)
        else:
            out["messages_ok"] = True
            out["sync_new_parts"] = tracker.apply_sync(msg_res, time.monotonic())
        self.log("probe", why=why, result={k: v for k, v in out.items() if k != "status"},
                 status=out.get("status"))
        return out

    async def finish_from_idle(self, kind: str) -> None:
        """Idle reached (SSE, status or completion evidence): final sync, then the verdict."""
        if self._finishing:
            return
        self._finishing = True
        t = self.tracker
        assert t is not None
        try:
            msgs = await self.client.messages(t.session_id, timeout=self.config.probe_timeout)
            t.apply_sync(msgs, time.monotonic())
        except OpencodeRequestError:
            pass
        reason = t.finish_reason
        last = t.last_assistant()
        if reason is None and last is not None:
            reason = last.get("finish")
        if reason in TERMINAL_OK_REASONS and last is not None and (last.get("time") or {}).get("completed") \
                and not last.get("error"):
            self.decide(RunStatus.OK, str(reason), {}, kind)
        elif last is None:
            if t.session_errors:
                self.decide(RunStatus.ERROR, "provider_error", {"errors": t.session_errors[-3:]}, kind)
            else:
                self.decide(RunStatus.INCOMPLETE, "turn_not_started", {}, kind)
        elif t.session_errors or last.get("error"):
            self.decide(RunStatus.ERROR, "provider_error",
                        {"errors": (t.session_errors or [last.get("error")])[-3:]}, kind)
        else:
            self.decide(status_for_reason(reason), str(reason or "unknown"), {}, kind)

    # -- the attempt ---------------------------------------------------------------------------
    async def run(self) -> Verdict:
        self.log("attempt.started", generation=self.record.generation)
        watch_task: asyncio.Task[None] | None = None
        acquired: str | None = None
        try:
            if self.liveness() == Liveness.DEAD:
                self.decide(RunStatus.SERVER_UNREACHABLE, "server_unreachable", {"liveness": "dead",
                                                                                 "before": "request"})
                return self.verdict  # type: ignore[return-value]
            self.stream.start()
            if not self.prompt_before_subscribe and not await self._await_subscription():
                return self.verdict  # type: ignore[return-value]
            sid = await self._create_session()
            if sid is None:
                return self.verdict  # type: ignore[return-value]
            CONSUMERS.acquire(self.target.identity, sid, self.n)
            acquired = sid
            self.record.session_id = sid
            self.tracker = TurnTracker(session_id=sid, prompt=self.prompt)
            if not await self._baseline(sid):
                return self.verdict  # type: ignore[return-value]
            watch_task = asyncio.get_running_loop().create_task(self.watchdog.run())
            await self._send_prompt(sid)
            await watch_task
            return self.verdict  # type: ignore[return-value]
        finally:
            await self._stop_consumer(watch_task)
            if acquired is not None:
                CONSUMERS.release(self.target.identity, acquired)

    async def _await_subscription(self) -> bool:
        bound = max(self.config.subscribe_timeout, self.config.stall_timeout or 0.0)
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self.stream.subscribed.wait(), self.config.tick)
                return True
            except asyncio.TimeoutError:
                if self._is_dead():
                    self.decide(RunStatus.SERVER_UNREACHABLE, "server_unreachable",
                                {"liveness": "dead", "during": "subscribe"})
                    return False
                self.stream.maintain(time.monotonic())
        self.decide(RunStatus.SERVER_UNREACHABLE, "server_unreachable",
                    {"cause": "sse_unavailable", "drops": self.stream.drops[-3:]})
        return False

    def _request_failed(self, exc: OpencodeRequestError) -> None:
        if exc.retriable:
            self.decide(RunStatus.SERVER_UNREACHABLE, "server_unreachable",
                        {"operation": exc.operation, "error": str(exc), "liveness": self.liveness().value,
                         "http_status": exc.http_status})
        else:
            self.decide(RunStatus.ERROR, "request_error", {"operation": exc.operation, "error": str(exc),
                                                           "http_status": exc.http_status})

    async def _create_session(self) -> str | None:
        if self.resume_id is not None:
            return self.resume_id
        try:
            sid = await self.client.call("create_session", self.client.create_session, is_dead=self._is_dead)
        except OpencodeRequestError as exc:
            self._request_failed(exc)
            return None
        self.log("session.created", session_id=sid)
        return sid

    async def _baseline(self, sid: str) -> bool:
        assert self.tracker is not None
        if self.resume_id is None:
            return True
        try:
            msgs = await self.client.call("messages", lambda: self.client.messages(sid), is_dead=self._is_dead)
            self.tracker.baseline_message_ids = {m["info"]["id"] for m in msgs
                                                 if isinstance(m, dict) and isinstance(m.get("info"), dict)}
            status = await self.client.call("status", self.client.status, is_dead=self._is_dead)
            if sid in status:  # a busy resumed session is aborted, never prompted while busy
                await self.client.abort(sid)
                if not await self.runner.wait_not_busy(sid, self.config.abort_grace):
                    self.decide(RunStatus.SESSION_STALLED, "session_stalled", {"cause": "resumed_session_busy"})
                    return False
        except OpencodeRequestError as exc:
            self._request_failed(exc)
            return False
        return True

    async def _send_prompt(self, sid: str) -> None:
        t = self.tracker
        assert t is not None
        t.prompt_sent_at = time.monotonic()
        self.log("prompt.sent", session_id=sid, subscribed=self.stream.subscribed.is_set())

        async def accepted_already(err: OpencodeRequestError) -> bool:
            # prompt_async is not idempotent: was the earlier send accepted after all?
            try:
                status = await self.client.status(timeout=self.config.probe_timeout)
                msgs = await self.client.messages(sid, timeout=self.config.probe_timeout)
            except OpencodeRequestError:
                return False
            t.apply_sync(msgs, time.monotonic())
            return sid in status or t.user_message_id is not None

        try:
            await self.client.call("prompt_async",
                                   lambda: self.client.prompt_async(sid, self.prompt, self.runner.model),
                                   before_retry=accepted_already, is_dead=self._is_dead)
        except OpencodeRequestError as exc:
            self.log("prompt.failed", error=str(exc))
            self._request_failed(exc)
            return
        t.prompt_accepted_at = time.monotonic()
        self.log("prompt.accepted", session_id=sid)
        self.resubscribed = True  # probe right away: a fast turn may finish before we look

    async def _stop_consumer(self, watch_task: asyncio.Task[None] | None) -> None:
        if self.verdict is None:
            self.decide(RunStatus.ERROR, "cancelled", {})
        tasks: list[asyncio.Task[Any]] = [t for t in ([watch_task] if watch_task else []) + list(self.tasks)]
        for task in tasks:
            task.cancel()
        stream_stop = asyncio.get_running_loop().create_task(self.stream.stop())
        pending = {stream_stop, *tasks}
        done, still = await asyncio.wait(pending, timeout=self.config.consumer_stop_timeout)
        self.record.sse_connections = self.stream.connections
        if still:
            self.verdict = Verdict(RunStatus.ERROR, "consumer_leak", {"pending": len(still)}, time.monotonic())
        self.log("consumer.stopped", leaked=len(still))
        self.open = False
