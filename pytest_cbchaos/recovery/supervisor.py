"""The supervisor: shared recovery budget, abort-before-retry, restart, results (docs/recovery-design.md#supervisor).

``AsyncRecoveryRunner`` is the asyncio core; ``RecoveryRunner`` (in :mod:`.facade`) the sync
facade. One budget (``max_recoveries``) is shared by ``SERVER_UNREACHABLE`` and
``SESSION_STALLED``; a unit is charged before acting. Exhaustion is never success.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import aiohttp

from pytest_cbchaos.recovery.client import ControlClient, OpencodeRequestError
from pytest_cbchaos.recovery.config import RecoveryConfig
from pytest_cbchaos.recovery.handle import ServerTarget
from pytest_cbchaos.recovery.attempt import Attempt
from pytest_cbchaos.lag import LagSampler
from pytest_cbchaos.recovery.status import (AttemptRecord, Liveness, RECOVERABLE, RunStatus, TurnResult,
                                             Verdict)


class AsyncRecoveryRunner:
    """Runs turns against one opencode server with stall / server-death recovery."""

    attempt_class = Attempt

    def __init__(self, server: Any, config: RecoveryConfig | None = None, *,
                 base_url: Any = None, events_url: Any = None, password: str | None = None,
                 directory: str | None = None, model: tuple[str, str] | None = None,
                 history_sink: Callable[[dict[str, Any]], None] | None = None) -> None:
        if isinstance(server, ServerTarget):
            self.target = server
        elif isinstance(server, str):
            self.target = ServerTarget(base_url=server, events_url=events_url, password=password,
                                       directory=directory)
        else:
            self.target = ServerTarget(handle=server, base_url=base_url, events_url=events_url,
                                       password=password, directory=directory)
        self.config = config or RecoveryConfig.load()
        self.model = model
        self.history: list[dict[str, Any]] = []
        self.history_sink = history_sink
        self.fault_at: float | None = None
        self._http: aiohttp.ClientSession | None = None
        self._client: ControlClient | None = None
        self._refusals = 0
        self._current: Attempt | None = None
        self.turns = 0
        self.lag = LagSampler()  # this loop's observed lag, judged beside every detection (docs/recovery.md)

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))
            self._client = ControlClient(self.target, self.config, self._http)
        return self._http

    @property
    def client(self) -> ControlClient:
        self.http  # noqa: B018 - creates the client
        assert self._client is not None
        return self._client

    def record(self, kind: str, **fields: Any) -> None:
        entry = {"type": kind, "t": time.monotonic(), "turn": self.turns, **fields}
        self.history.append(entry)
        if self.history_sink is not None:
            self.history_sink(entry)

    def mark_fault(self, at: float | None = None) -> None:
        """Tell the runner when a fault was injected, for ``fault_to_verdict_s``."""
        self.fault_at = time.monotonic() if at is None else at

    def external_liveness(self) -> Liveness:
        """No handle: refused health probes decide; the watchdog ticks drive it (cheap, sync)."""
        import socket
        from urllib.parse import urlsplit
        parts = urlsplit(self.target.control())
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=0.5):
                self._refusals = 0
                return Liveness.ALIVE
        except ConnectionRefusedError:
            self._refusals += 1
            return Liveness.DEAD if self._refusals >= self.config.unreachable_refusals else Liveness.UNKNOWN
        except OSError:
            return Liveness.UNKNOWN

    def interrupt(self) -> None:
        if self._current is not None:
            self._current.interrupted = True
            self._current.wake.set()

    async def aclose(self) -> None:
        await self.lag.stop_task()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> "AsyncRecoveryRunner":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the turn -------------------------------------------------------------------------------
    def retry_prompt(self, prompt: str, attempt_n: int) -> str:
        """A retry carries the original prompt verbatim (optionally after a preamble)."""
        pre = self.config.resume_preamble
        return f"{pre}\n\n{prompt}" if pre else prompt

    def _charge(self, used: int, status: RunStatus) -> bool:
        """True if one unit can be spent; M10 overrides this with per-class budgets."""
        return used < self.config.max_recoveries

    async def run_turn(self, prompt: str, *, session_id: str | None = None) -> TurnResult:
        self.turns += 1
        self.lag.ensure_task()
        used = 0
        records: list[AttemptRecord] = []
        text = prompt
        sid = session_id
        n = 0
        by_class: dict[RunStatus, int] = {}
        while True:
            n += 1
            attempt = self.attempt_class(self, n, text, sid)
            self._current = attempt
            verdict = await attempt.run()
            self._current = None
            rec = attempt.record
            rec.verdict, rec.reason, rec.evidence = verdict.status, verdict.reason, verdict.evidence
            rec.ended_at = time.monotonic()
            if self.fault_at is not None and self.fault_at >= rec.started_at - 30:
                rec.fault_to_verdict_s = round(verdict.at - self.fault_at, 3)
            records.append(rec)
            lag = self.lag.window(self._measured_from(rec, verdict), verdict.at)
            rec.lag_s = round(lag.sum_s, 4)
            self.record("verdict", attempt=n, status=verdict.status.name, reason=verdict.reason,
                        evidence=_jsonable(verdict.evidence), fault_to_verdict_s=rec.fault_to_verdict_s,
                        verdict_at=verdict.at, **lag.to_dict())
            if verdict.status not in RECOVERABLE:
                return self._finalize(verdict, attempt, records, used, False)
            if verdict.status == RunStatus.SERVER_UNREACHABLE and not self.target.can_restart:
                return self._finalize(verdict, attempt, records, used, False)
            if not self._charge(by_class.get(verdict.status, 0) if self._per_class else used, verdict.status):
                return self._finalize(verdict, attempt, records, used, True)
            used += 1
            by_class[verdict.status] = by_class.get(verdict.status, 0) + 1
            error = await self._recover(verdict, attempt)
            if error is not None:
                return self._finalize(Verdict(RunStatus.ERROR, "restart_failed", {"error": error}, time.monotonic()),
                                      attempt, records, used, False, error=error)
            text = self.retry_prompt(prompt, n + 1)
            sid = None

    _per_class = False

    def _measured_from(self, rec: AttemptRecord, verdict: Verdict) -> float:
        """Start of the window a verdict's latency is measured over: the marked fault, else the last
        progress (stall) or the acceptance (first-event deadline), else the attempt start."""
        if self.fault_at is not None and rec.fault_to_verdict_s is not None:
            return self.fault_at
        age = verdict.evidence.get("last_progress_age_s", verdict.evidence.get("first_event_wait_s"))
        if isinstance(age, (int, float)):
            return verdict.at - float(age)
        return rec.started_at

    async def _recover(self, verdict: Verdict, attempt: Attempt) -> str | None:
        """Abort-and-retry on a live server, else restart. Returns an error text on failure."""
        sid = attempt.record.session_id
        if verdict.status == RunStatus.SESSION_STALLED and sid is not None \
                and self.target.liveness() == Liveness.ALIVE and self.should_abort():
            settled = False
            try:
                await self.client.abort(sid)
                settled = await self.wait_not_busy(sid, self.config.abort_grace)
            except OpencodeRequestError as exc:
                self.record("abort", attempt=attempt.n, session_id=sid, ok=False, error=str(exc))
            else:
                self.record("abort", attempt=attempt.n, session_id=sid, ok=True, settled=settled)
            attempt.record.aborted = True
            if settled:
                return None
        if not self.target.can_restart:
            return None if verdict.status == RunStatus.SESSION_STALLED else "no handle to restart"
        old_gen = self.target.generation
        t0 = time.monotonic()
        try:
            await asyncio.to_thread(self.target.restart)
        except Exception as exc:  # a failed restart is final ERROR with the start error
            tail = getattr(self.target.handle, "log_tail", None)
            extra = ""
            if callable(tail):
                try:
                    extra = "\n" + str(tail())
                except Exception:
                    pass
            self.record("restart", ok=False, error=str(exc))
            return f"restart failed: {exc}{extra}"
        self.record("restart", ok=True, old_generation=old_gen, generation=self.target.generation,
                    port=getattr(self.target.handle, "port", None), seconds=round(time.monotonic() - t0, 3))
        return None

    def should_abort(self) -> bool:
        return True  # M5 (retry without abort) overrides

    async def wait_not_busy(self, sid: str, bound: float) -> bool:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            try:
                status = await self.client.status(timeout=min(self.config.probe_timeout, bound))
                if sid not in status:
                    return True
            except OpencodeRequestError:
                pass
            await asyncio.sleep(0.1)  # poll interval of a bounded wait
        return False

    def _finalize(self, verdict: Verdict, attempt: Attempt, records: list[AttemptRecord], used: int,
                  exhausted: bool, error: str | None = None) -> TurnResult:
        t = attempt.tracker
        status = verdict.status
        if exhausted and status == RunStatus.OK:  # impossible by construction; kept as a guard
            status = RunStatus.ERROR
        if status != RunStatus.OK and error is None:
            error = f"{verdict.reason}: {_short(verdict.evidence)}"
        return TurnResult(status=status, finish_reason=verdict.reason, session_id=attempt.record.session_id,
                          text=t.text if t else "", tokens=t.tokens if t else None,
                          idle_confirmed=verdict.idle_confirmed if status == RunStatus.OK else None,
                          recoveries_used=used, budget_exhausted=exhausted, error=error, attempts=records)


def _short(evidence: dict[str, Any]) -> str:
    return str({k: v for k, v in evidence.items() if k != "probe"})[:300]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)
