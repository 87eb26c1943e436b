"""The producer: one run per message turns source events into durable, seq-numbered entries.

Every write is a script call frozen as an :class:`AppendCall`; a call whose outcome is unknown is
resent identically until it resolves (``OK`` or ``DUP``), so retries never duplicate or lose.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions as rexc

from pytest_cbchaos.stream.config import StreamConfig
from pytest_cbchaos.stream.envelope import encode_payload, kind_class, split_text, truncate_utf8
from pytest_cbchaos.stream.sources import STAGES, SourceFailure, TurnSource
from pytest_cbchaos.stream.store import AppendCall, StoreUnavailable, StreamStore

TRANSIENT = (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, ConnectionError, OSError,
             asyncio.TimeoutError)
TRANSIENT_REPLIES = ("LOADING", "READONLY", "OOM", "NOSCRIPT", "MASTERDOWN", "TRYAGAIN")
STOP_STATUSES = ("FENCED", "CLOSED", "EPOCH", "ROLLBACK", "NO_STREAM", "IDEM_MISMATCH", "BAD_BATCH", "CONFLICT")


class ConversationBusy(RuntimeError):
    """``open_turn`` answered BUSY: another producer holds the conversation's lease."""


class _StoreDown(Exception):
    pass


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, rexc.ResponseError) and str(exc).split(" ")[0].upper() in TRANSIENT_REPLIES


@dataclass
class TurnOutcome:
    status: str  # completed, failed, interrupted, unknown, duplicate
    terminal_kind: str | None = None
    terminal_seq: int | None = None
    error: BaseException | None = None
    appends: int = 0
    retries: int = 0
    unwritten_events: int = 0
    superseded_by: str | None = None
    stop_reason: str | None = None
    stop_detail: str | None = None
    rebase: str | None = None  # after ROLLBACK: the rebase script's status (OK, NO_RECORD, FENCED...) or "unknown"
    epoch: str | None = None  # the rotated epoch when the rebase applied


@dataclass
class TurnHandle:
    conversation_id: str
    message_id: str
    epoch: str
    first_seq: int
    stream_id: str
    task: asyncio.Task | None = None
    duplicate: bool = False

    @property
    def after_seq(self) -> int:
        return self.first_seq - 1

    async def wait(self) -> TurnOutcome:
        if self.task is None:
            return TurnOutcome(status="duplicate")
        return await asyncio.shield(self.task)


class TurnRelay:
    """Runs producer tasks for turns. ``history`` (a list) receives one dict per append operation."""

    def __init__(self, store: StreamStore, config: StreamConfig | None = None, *,
                 history: list[dict[str, Any]] | None = None) -> None:
        self.store = store
        self.config = config or store.config
        self.history = history
        self.emissions: list[tuple[str, int, str, bytes]] = []  # (stream_id, step, kind, payload) oracle
        self._tasks: set[asyncio.Task] = set()
        self.closing = False
        self.run_class: type = _Run  # mutants substitute a broken run
        self._durability: str | None = None

    async def start(self, conversation_id: str, source: TurnSource, *, model_id: str, prompt: str = "",
                    message_id: str | None = None, previous_message_id: str | None = None) -> TurnHandle:
        mid = message_id or uuid.uuid4().hex
        sid = uuid.uuid4().hex
        payload = encode_payload("turn_started", {"model_id": model_id, "source": type(source).__name__,
                                                  "previous_message_id": previous_message_id})
        sup = encode_payload("cancelled", {"reason": "superseded"})
        if self._durability is None:
            try:
                self._durability = await self.store.durability()
            except Exception:
                self._durability = "best_effort"
        epoch_candidate = secrets.token_hex(8)
        reaper_id = f"reaper:{secrets.token_hex(8)}"
        ts = int(time.time() * 1000)
        deadline = time.monotonic() + self.config.write_deadline_s
        delay = 0.05
        while True:
            try:
                reply = await self.store.open_turn(conversation_id, mid, sid, payload=payload, superseded_payload=sup,
                                                   ts_ms=ts, durability=self._durability, epoch=epoch_candidate,
                                                   reaper_id=reaper_id)
                break
            except Exception as exc:
                if not _is_transient(exc) or time.monotonic() + delay > deadline:
                    if _is_transient(exc):
                        raise StoreUnavailable(f"open_turn({conversation_id}, {mid}): store unreachable: {exc}") from exc
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        if reply.status == "BUSY":
            raise ConversationBusy(f"conversation {conversation_id!r} has a live producer ({reply.stream_id})")
        self.emissions.append((sid, 1, "turn_started", payload))
        if reply.status == "DUP" and reply.stream_id != sid:
            return TurnHandle(conversation_id, mid, reply.epoch, reply.first_seq, reply.stream_id, duplicate=True)
        try:
            await self.store.active_add(conversation_id)
        except Exception:
            pass  # the reaper's start-up scan finds conversations missing from `active`
        run = self.run_class(self, conversation_id, mid, sid, reply.epoch, reply.first_seq, source)
        task = asyncio.get_running_loop().create_task(run.main(), name=f"relay:{conversation_id}:{mid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.sleep(0)  # let the run enter its try block: a cancel from now on is R4
        return TurnHandle(conversation_id, mid, reply.epoch, reply.first_seq, sid, task)

    async def cancel(self, conversation_id: str, message_id: str) -> str:
        """Request a cancel; with no live lease, write ``cancelled{user}`` here. Returns the script status."""
        await self.store.request_cancel(conversation_id, message_id)
        if await self.store.lease_holder(conversation_id) is None:
            reply = await self.store.reap(conversation_id, message_id, f"cancel:{secrets.token_hex(8)}",
                                          encode_payload("cancelled", {"reason": "user"}))
            return reply.status
        return "REQUESTED"

    async def aclose(self) -> None:
        """Cancel every run (each finishes with ``cancelled{relay_shutdown}``) and await them. ``closing``
        also ends a run whose cancellation a library call swallowed (docs/stream-design.md)."""
        self.closing = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _bounded(coro: Any, timeout: float, what: str) -> Any:
    """Run ``coro`` as a task bounded by ``timeout`` (asyncio.wait: never swallows a cancellation)."""
    task = asyncio.get_running_loop().create_task(coro)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task not in done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise asyncio.TimeoutError(f"{what} did not finish within {timeout:g}s")
    return task.result()


class _Run:
    def __init__(self, relay: TurnRelay, conv: str, mid: str, sid: str, epoch: str, first_seq: int,
                 source: TurnSource) -> None:
        self.relay, self.store, self.cfg = relay, relay.store, relay.config
        self.conv, self.mid, self.sid, self.epoch = conv, mid, sid, epoch
        self.prev_seq = first_seq
        self.next_step = 2
        self.source = source
        self.pending: list[tuple[str, str, int, bytes]] = []
        self.pending_since = 0.0
        self.inflight: AppendCall | None = None
        self.content_emitted = 0  # flushed + buffered
        self.content_flushed = 0
        self.finished = False
        self.stopped: str | None = None
        self.ended = False  # the run is over: the renewal loop stops (a flag as well as cancel)
        self.outcome = TurnOutcome(status="unknown")

    # -- writes --------------------------------------------------------------------------------
    def _call(self, terminal: tuple[str, bytes] | None = None) -> AppendCall:
        events = list(self.pending)
        code = msg = ""
        if terminal is not None:
            kind, data = terminal
            events.append((kind, "terminal", int(time.time() * 1000), data))
            if kind == "error":
                import json
                p = json.loads(data)
                code, msg = p["code"], p["message"]
        call = AppendCall(self.conv, self.mid, self.sid, self.next_step, self.prev_seq, self.epoch, tuple(events),
                          code, msg)
        for i, (kind, _c, _t, data) in enumerate(events):
            self.relay.emissions.append((self.sid, self.next_step + i, kind, data))
        return call

    async def _send(self, call: AppendCall, deadline: float) -> str:
        """Send ``call`` (resending it identically on unknown outcomes) until resolved or the deadline."""
        self.inflight = call
        delay = 0.02
        hist = self.relay.history
        while True:
            op = {"f": "append", "stream_id": call.stream_id, "first_step": call.first_step,
                  "count": len(call.events), "kinds": call.kinds, "type": "invoke", "t": time.monotonic()}
            if hist is not None:
                hist.append(op)
            try:
                reply = await self.store.append(call)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if hist is not None:
                    hist.append({**op, "type": "info", "error": repr(exc), "t": time.monotonic()})
                if not _is_transient(exc):
                    raise
                self.outcome.retries += 1
                if time.monotonic() + delay > deadline:
                    raise _StoreDown(str(exc)) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            if hist is not None:
                hist.append({**op, "type": "ok" if reply.status in ("OK", "DUP") else "fail",
                             "status": reply.status, "t": time.monotonic()})
            self.outcome.appends += 1
            self.inflight = None
            if reply.status in ("OK", "DUP"):
                self.prev_seq = reply.last_seq
                self.next_step += len(call.events)
                self.content_flushed += sum(1 for e in call.events if e[1] == "content")
                if call.is_terminal:
                    self.finished = True
                    self.outcome.status = {"complete": "completed", "error": "failed",
                                           "cancelled": "interrupted"}[call.events[-1][0]]
                    self.outcome.terminal_kind = call.events[-1][0]
                    self.outcome.terminal_seq = reply.last_seq
                return reply.status
            self.stopped = reply.status
            self.outcome.stop_reason = reply.status
            self.outcome.stop_detail = reply.detail
            if reply.status == "ROLLBACK":
                await self._rebase(call, int(reply.detail or 0), deadline)
            else:
                await self._learn_superseded()
            return reply.status

    async def _rebase(self, call: AppendCall, last_seq: int, deadline: float) -> None:
        """See docs/stream-design.md#restart-and-lost-suffix: one ``rebase`` for the lost suffix ``last_seq+1 ..
        prev_seq`` (resent only on an unknown outcome, which the epoch check makes idempotent); the outcome records
        what happened."""
        new_epoch = secrets.token_hex(8)
        err = self._error("store", "store.rollback", f"the store lost entries {last_seq + 1}..{call.prev_seq} "
                          f"(restart without durable persistence)")
        err.update(lost_from=last_seq + 1, lost_to=call.prev_seq)
        data = encode_payload("error", err)
        delay = 0.02
        while True:
            try:
                reply = await self.store.rebase(self.conv, self.mid, self.sid, old_epoch=call.epoch,
                                                new_epoch=new_epoch, last_seq=last_seq, step=call.first_step,
                                                ts_ms=int(time.time() * 1000), payload=data,
                                                error_code=err["code"], error_message=err["message"])
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not _is_transient(exc) or time.monotonic() + delay > deadline:
                    self.outcome.rebase = "unknown"
                    self.outcome.error = self.outcome.error or exc
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        status, seq = reply.status, reply.last_seq
        if status == "EPOCH" and reply.detail == new_epoch:  # an earlier, unacknowledged send applied
            try:
                rec = await self.store.record(self.conv, self.mid)
            except Exception:
                rec = None
            ours = rec is not None and rec.get("error_code") == "store.rollback" and rec.get("stream_id") == self.sid
            status, seq = ("OK", rec["terminal_seq"]) if ours else ("APPLIED", 0)
        self.outcome.rebase = status
        if status in ("OK", "APPLIED", "NO_RECORD", "ALREADY_TERMINAL"):
            self.outcome.epoch = new_epoch
        if status == "OK":
            self.finished = True
            self.outcome.status, self.outcome.terminal_kind, self.outcome.terminal_seq = "failed", "error", seq

    async def _learn_superseded(self) -> None:
        try:
            rec = await self.store.record(self.conv, self.mid)
            if rec and rec.get("terminal_seq"):
                entries = await self.store.xrange(self.conv, rec["terminal_seq"] - 1, 1)
                if entries:
                    self.outcome.superseded_by = entries[0].stream_id
                    self.outcome.terminal_kind = rec.get("terminal_kind")
                    self.outcome.terminal_seq = rec["terminal_seq"]
                    self.outcome.status = rec["status"]
            else:
                self.outcome.stop_detail = f"fenced before a terminal was written: record {rec}"
        except Exception as exc:
            self.outcome.stop_detail = f"could not read who took over: {exc!r}"

    async def flush(self) -> None:
        if not self.pending or self.stopped:
            return
        call = self._call()
        self.pending = []
        await self._send(call, time.monotonic() + self.cfg.write_deadline_s)

    async def finish(self, kind: str, payload: dict[str, Any] | bytes) -> None:
        """Pending content + the terminal in one call; resends an unresolved call first."""
        if self.finished or self.stopped:
            return
        data = payload if isinstance(payload, bytes) else encode_payload(kind, payload)
        deadline = time.monotonic() + self.cfg.terminal_deadline_s
        try:
            if self.inflight is not None:
                await self._send(self.inflight, deadline)
                if self.stopped:
                    return
            call = self._call((kind, data))
            self.pending = []
            await self._send(call, deadline)
        except _StoreDown:
            self.outcome.unwritten_events = len(self.pending) + 1

    def _error(self, stage: str, code: str, exc: BaseException | str, retriable: bool = False) -> dict[str, Any]:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        return {"code": code, "stage": stage, "message": truncate_utf8(text, 2048), "retriable": retriable,
                "partial": self._content_seen() > 0}

    def _content_seen(self) -> int:
        """Content events of this message, buffered ones included (INV-20)."""
        return self.content_emitted

    # -- the run ---------------------------------------------------------------------------------
    async def main(self) -> TurnOutcome:
        renew = asyncio.get_running_loop().create_task(self._renew_loop())
        try:
            try:
                await self._bootstrap()
                if not self.finished and not self.stopped:
                    await self._relay_loop()
            except asyncio.CancelledError:
                try:
                    await _bounded(self.finish("cancelled", {"reason": "relay_shutdown"}), self.cfg.shutdown_grace_s,
                                   "shutdown finish")
                finally:
                    raise
            except _StoreDown as exc:  # W3: store down at write_deadline
                self.source.abort()
                self.outcome.error = exc
                await self.finish("error", self._error("store", "store.unavailable", f"store unreachable: {exc}", True))
            except Exception as exc:  # R6: a relay bug
                self.outcome.error = exc
                await self.finish("error", self._error("relay", "relay.internal", exc))
        finally:
            self.ended = True
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)
            try:
                await self.source.aclose()
            except Exception:
                pass
            if self.finished:  # when fenced/closed, the owning writer or the reaper clears `active`
                try:
                    await self.store.active_remove(self.conv)
                except Exception:
                    pass
        return self.outcome

    async def _bootstrap(self) -> None:
        for stage in STAGES:
            try:
                await _bounded(self.source.bootstrap(stage), self.cfg.bootstrap_timeout_s, f"bootstrap {stage}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.outcome.error = exc
                retriable = stage == "transport" or isinstance(exc, (asyncio.TimeoutError, ConnectionError))
                payload = self._error(stage, f"bootstrap.{stage}", exc, retriable)
                if getattr(exc, "error_cause", None):
                    payload["cause"] = exc.error_cause  # e.g. circuit_open (gateway breakers)
                await self.finish("error", payload)
                return

    async def _renew_loop(self) -> None:
        # a flag as well as cancel: a client read whose own timeout lands with the cancel raises
        # TimeoutError instead (3.11's asyncio.timeout), which the loop would take for a failed renewal
        while not self.ended:
            await asyncio.sleep(self.cfg.lease_renew_s)
            try:
                reply = await self.store.renew(self.conv, self.sid)
                if reply.status == "FENCED":
                    if not self.stopped and not self.finished:
                        # learn first: once `stopped` is set the run ends and cancels this loop (INV-16:
                        # the outcome names who took over)
                        await self._learn_superseded()
                        if self.outcome.superseded_by == self.sid:  # the run's own terminal ended the lease
                            self.outcome.superseded_by = None
                        else:
                            self.stopped = self.outcome.stop_reason = self.stopped or "FENCED"
                    self.source.abort()
                    return
                await self.store.active_add(self.conv)
            except Exception:
                continue

    async def _pump(self, queue: asyncio.Queue) -> None:
        try:
            async for ev in self.source:
                await queue.put(ev)
            await queue.put(("end", None))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await queue.put(("fail", exc))

    def _freeze(self, kind: str, payload: Any) -> bytes:
        """Serialise at emission (INV-9); a mutant keeps the object instead."""
        return encode_payload(kind, payload)

    async def _relay_loop(self) -> None:
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.cfg.max_buffer_events)
        pump = asyncio.get_running_loop().create_task(self._pump(queue))
        poll = self.cfg.cancel_poll_ms / 1000
        flush_s = self.cfg.flush_interval_ms / 1000
        next_cancel_check = time.monotonic()
        getter: asyncio.Task | None = None
        try:
            while not self.finished and not self.stopped:
                if self.relay.closing:  # the relay's cancel, even if a store call turned it into a timeout
                    raise asyncio.CancelledError
                now = time.monotonic()
                timeout = max(0.0, next_cancel_check - now)
                if self.pending:
                    timeout = min(timeout, max(0.0, self.pending_since + flush_s - now))
                # asyncio.wait on a persistent getter: never swallows a cancellation (3.11's
                # wait_for and timeout() can), never loses an item taken by a timed-out get
                if getter is None:
                    getter = asyncio.get_running_loop().create_task(queue.get())
                done, _ = await asyncio.wait({getter}, timeout=timeout if timeout > 0 else 0)
                item = None
                if getter in done:
                    item, getter = getter.result(), None
                if time.monotonic() >= next_cancel_check:
                    next_cancel_check = time.monotonic() + poll
                    if await self._cancel_requested():
                        self.source.abort()
                        await self.finish("cancelled", {"reason": "user"})
                        return
                if item is None:
                    if self.pending and time.monotonic() >= self.pending_since + flush_s:
                        await self.flush()
                    continue
                if isinstance(item, tuple):
                    tag, exc = item
                    if tag == "end":
                        if self._content_seen() == 0:
                            await self.finish("error", self._error("stream", "source.empty", "source ended with no content"))
                        else:
                            await self.finish("error", self._error("stream", "source.incomplete",
                                                                   "source ended without completion evidence"))
                    else:
                        code = getattr(exc, "code", "source.error")
                        await self.finish("error", self._error("stream", code, exc,
                                                               getattr(exc, "retriable", False)))
                    return
                await self._accept(item.kind, item.payload)
        finally:
            pump.cancel()
            if getter is not None:
                getter.cancel()
            await asyncio.gather(pump, *([getter] if getter else []), return_exceptions=True)

    async def _accept(self, kind: str, payload: Any) -> None:
        try:
            cls = kind_class(kind)
            if kind in ("text_delta", "reasoning_delta") and len(str(payload.get("text", "")).encode()) > self.cfg.max_event_bytes:
                pieces = [dict(payload, text=t) for t in split_text(payload["text"], self.cfg.max_event_bytes - 512)]
            else:
                pieces = [payload]
            datas = [self._freeze(kind, p) for p in pieces]
        except (ValueError, TypeError, AttributeError) as exc:
            self.outcome.error = exc
            await self.finish("error", self._error("relay", "relay.bad_event", exc))
            return
        if cls == "terminal":
            if kind == "error":
                p = dict(payload)
                p["partial"] = self._content_seen() > 0
                p.setdefault("stage", "stream")
                await self.finish(kind, p)
            else:
                await self.finish(kind, datas[0])
            return
        for data in datas:
            if not self.pending:
                self.pending_since = time.monotonic()
            self.pending.append((kind, cls, int(time.time() * 1000), data))
            if cls == "content":
                self.content_emitted += 1
        size = sum(len(e[3]) for e in self.pending)
        if cls == "control" or len(self.pending) >= self.cfg.max_batch or size >= self.cfg.max_batch_bytes // 2:
            await self.flush()

    async def _cancel_requested(self) -> bool:
        try:
            return await self.store.cancel_requested(self.conv, self.mid)
        except Exception:
            return False
