"""Scriptable OpenAI-compatible streaming model provider (docs/opencode-design.md#mock-provider).

API summary (stable)::

    mock = MockLLM(strict=False, require_key=True)   # or: with MockLLM() as mock:
    mock.start()                    # aiohttp app in its own event-loop thread, 127.0.0.1:<allocated port>
    mock.base_url                   # "http://127.0.0.1:<port>/v1"; mock.host, mock.port, mock.api_key
    api_key_for(mock.base_url)      # the key of a mock running in this process (launcher default)
    mock.script("main", [text("hello", chunks=3, delay=0.05)])   # FIFO per matcher
    mock.script("title", [http_error(429, retry_after=1)], times=2)
    mock.script(lambda body: "secret" in json.dumps(body), [stall_forever()])
    gate = mock.script("main", [stall_forever()]).gates[0]      # or: g = stall_forever(); ... g.gate
    gate.release(); mock.release_all()
    mock.set_default([text("ok")])
    mock.requests                   # list[RequestRecord] (snapshot), mock.unexpected
    mock.wait_for("main", count=1, timeout=10) -> list[RequestRecord]
    mock.wait_client_closed(seq, timeout=5) -> RequestRecord
    mock.wait_idle(timeout) -> None  # no handler running
    mock.last_user_text("main") -> str | None
    await mock.await_for(...); await mock.await_client_closed(...)   # asyncio wrappers
    mock.reset()                    # release gates, wait handlers, clear scripts and log
    mock.stop()                     # release gates, close streams, stop; raises MockLLMLeak if a handler stays

Reply steps (composed in order): :func:`ttfb`, :func:`text`, :func:`tokens`, :func:`tool_call`, :func:`stall`,
:func:`stall_forever` (a :class:`Gate`), :func:`disconnect`, :func:`http_error`, :func:`malformed`,
:func:`finish`. ``stall``/``stall_forever`` send the 200 headers first (a stall inside a started stream);
``ttfb`` delays the headers. A plan that streams content without a ``finish`` step gets ``finish("stop")`` (or
``"tool_calls"`` after a tool call) and ``data: [DONE]`` automatically. Requests are classified ``title``
(no tool definitions) or ``main`` (tools present).

The mock never writes keep-alive comments: bytes on the stream would look like progress. During a stall
the handler polls its transport every 50 ms and records a client disconnect (aiohttp does not cancel
handlers on disconnect by default).
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence, TypeVar

from aiohttp import web

from pytest_cbchaos.servers.ports import DEFAULT_RANGE, PortLease, allocate_port

MODEL_ID = "mock"
_POLL_S = 0.05
T = TypeVar("T")


_LIVE_KEYS: dict[str, str] = {}  # base_url -> api_key of mocks running in this process


def api_key_for(base_url: str) -> str | None:
    """The key of the mock serving ``base_url`` in this process (lets a launcher fill in its provider key)."""
    return _LIVE_KEYS.get(base_url.rstrip("/"))


class MockLLMError(RuntimeError):
    """Misuse of the mock (bad step, not started) — the message names the problem."""


class MockLLMLeak(MockLLMError):
    """A handler or request stayed open past teardown."""


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------
class Gate:
    """Holds a ``stall_forever`` step until :meth:`release` (or ``mock.release_all()``)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def release(self) -> None:
        self._event.set()

    @property
    def released(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


@dataclass(frozen=True)
class Step:
    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    gate: Gate | None = None

    def describe(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.kind}({inner})"


def _nonneg(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or value != value or value < 0:
        raise MockLLMError(f"{name}={value!r}: expected a number >= 0")
    return float(value)


def ttfb(seconds: float) -> Step:
    """Delay before the response headers."""
    return Step("ttfb", {"seconds": _nonneg("ttfb seconds", seconds)})


def text(s: str, chunks: int = 1, delay: float = 0.0) -> Step:
    """Stream ``s`` split into ``chunks`` content deltas, ``delay`` seconds before each after the first."""
    if not isinstance(chunks, int) or chunks < 1:
        raise MockLLMError(f"text chunks={chunks!r}: expected an int >= 1")
    return Step("text", {"text": str(s), "chunks": chunks, "delay": _nonneg("text delay", delay)})


def tokens(parts: Sequence[str], delay: float = 0.0) -> Step:
    """Stream each string of ``parts`` as one content delta."""
    return Step("tokens", {"tokens": [str(p) for p in parts], "delay": _nonneg("tokens delay", delay)})


def tool_call(name: str, arguments: dict[str, Any] | str | None = None) -> Step:
    """One function tool call delta (``finish`` defaults to ``tool_calls`` afterwards)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return Step("tool_call", {"name": name, "arguments": args})


def stall(seconds: float) -> Step:
    """Write nothing for ``seconds`` (the client may close meanwhile; that is recorded)."""
    return Step("stall", {"seconds": _nonneg("stall seconds", seconds)})


def stall_forever() -> Step:
    """Write nothing until the step's ``gate`` is released or the client closes."""
    return Step("stall_forever", {}, gate=Gate())


def stall_midway(s: str) -> list[Step]:
    """The first half of ``s``, a stall until released (``stall_forever``), then the rest: a model that
    stops talking mid-answer."""
    cut = -(-len(s) // 2)
    return [text(s[:cut]), stall_forever(), *([text(s[cut:])] if s[cut:] else [])]


def disconnect(after_chunks: int = 0, mode: str = "fin") -> Step:
    """Arm a disconnect: after ``after_chunks`` further chunks close the socket (``fin``) or reset it (``rst``)."""
    if mode not in ("fin", "rst"):
        raise MockLLMError(f"disconnect mode={mode!r}: expected 'fin' or 'rst'")
    if not isinstance(after_chunks, int) or after_chunks < 0:
        raise MockLLMError(f"disconnect after_chunks={after_chunks!r}: expected an int >= 0")
    return Step("disconnect", {"after_chunks": after_chunks, "mode": mode})


def http_error(status: int, body: str | dict[str, Any] | None = None, retry_after: float | None = None) -> Step:
    """Reply with an HTTP error instead of a stream (must come before any content)."""
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise MockLLMError(f"http_error status={status!r}: expected an int 400-599")
    if body is None:
        body = {"error": {"message": f"mock error {status}", "type": "mock_error", "code": status}}
    return Step("http_error", {"status": status, "body": body, "retry_after": retry_after})


def malformed(raw: bytes | str = b"data: {not json\n\n") -> Step:
    """Write ``raw`` bytes as they are (a broken SSE frame)."""
    return Step("malformed", {"raw": raw.encode() if isinstance(raw, str) else bytes(raw)})


def finish(reason: str = "stop", usage: dict[str, int] | None = None) -> Step:
    """Final chunk with ``finish_reason`` and ``usage``, then ``data: [DONE]``."""
    return Step("finish", {"reason": reason, "usage": usage})


DEFAULT_PLAN: tuple[Step, ...] = (text("ok"),)


# ---------------------------------------------------------------------------------------------
# Records and scripts
# ---------------------------------------------------------------------------------------------
@dataclass
class RequestRecord:
    seq: int
    kind: str  # title | main | other
    path: str
    received_at: float
    body: Any
    headers: dict[str, str]
    plan: list[str]
    stream: bool = True
    chunks_sent: int = 0
    http_status: int | None = None
    client_closed_at: float | None = None
    finished_at: float | None = None
    outcome: str | None = None  # completed stalled released client_closed disconnected http_error
    gates: list[Gate] = field(default_factory=list, repr=False)

    @property
    def open(self) -> bool:
        return self.finished_at is None

    def user_text(self) -> str | None:
        return _last_user_text(self.body)


def _last_user_text(body: Any) -> str | None:
    try:
        messages = body.get("messages") or []
    except AttributeError:
        return None
    for msg in reversed(messages):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return None


Matcher = str | Callable[[Any], bool]


@dataclass
class Script:
    """A FIFO queue of plans for one matcher."""

    matcher: Matcher
    plans: deque[list[Step]]
    gates: list[Gate]

    def matches(self, kind: str, body: Any) -> bool:
        if isinstance(self.matcher, str):
            return self.matcher in (kind, "any")
        return bool(self.matcher(body))


def _classify(body: Any) -> str:
    if not isinstance(body, dict):
        return "other"
    return "main" if body.get("tools") else "title"


def _redact(headers: Any) -> dict[str, str]:
    out = {}
    for k, v in headers.items():
        if k.lower() in ("authorization", "x-api-key", "api-key"):
            v = (v.split(" ", 1)[0] + " <redacted>") if " " in v else "<redacted>"
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------
class _Closed(Exception):
    """The client closed the connection (or the server is stopping)."""


class MockLLM:
    """The mock provider. See the module docstring for the API."""

    def __init__(self, *, strict: bool = False, require_key: bool = True, api_key: str | None = None,
                 port_range: tuple[int, int] = DEFAULT_RANGE, model: str = MODEL_ID) -> None:
        self.strict = strict
        self.require_key = require_key
        self.api_key = api_key or "cbchaos-" + secrets.token_hex(16)
        self.port_range = port_range
        self.model = model
        self.host = "127.0.0.1"
        self._lease: PortLease | None = None
        self._lock = threading.Condition()
        self._records: list[RequestRecord] = []
        self._unexpected: list[RequestRecord] = []
        self._scripts: list[Script] = []
        self._default: list[Step] = list(DEFAULT_PLAN)
        self._running: set[int] = set()
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = threading.Event()
        self._gen = 0  # bumped by reset(): handlers of an older generation count as stopping

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._lease is None:
            raise MockLLMError("MockLLM is not started; call start() first")
        return self._lease.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "MockLLM":
        if self.running:
            return self
        self._stopping.clear()
        self._lease = allocate_port(self.port_range)
        ready = threading.Event()
        errors: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve())  # type: ignore[union-attr]
            except BaseException as exc:  # surfaced to start()
                errors.append(exc)
            finally:
                ready.set()
            self._loop.run_forever()  # type: ignore[union-attr]

        self._thread = threading.Thread(target=run, name=f"cbchaos-mockllm-{self.port}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors or self._runner is None:
            self._shutdown_loop()
            raise MockLLMError(f"mock LLM could not bind 127.0.0.1:{self.port}: {errors[0] if errors else 'timeout'}")
        _LIVE_KEYS[self.base_url] = self.api_key
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner

    def stop(self, timeout: float = 5.0) -> None:
        """Release every gate, close every stream, stop the server; raise if a handler is still running."""
        if self._thread is None:
            return
        self._stopping.set()
        self.release_all()
        leaked = not self._wait_handlers(timeout)
        loop = self._loop
        if loop is not None and self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            try:
                fut.result(timeout)
            except Exception:
                pass
        self._shutdown_loop()
        if leaked:
            with self._lock:
                open_ = [r.seq for r in self._records if r.open]
            raise MockLLMLeak(f"mock LLM handlers still running at stop: requests {open_}")

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            if not thread.is_alive():
                loop.close()
        self._loop = self._thread = None
        self._runner = None
        if self._lease is not None:
            _LIVE_KEYS.pop(self.base_url, None)
            self._lease.release()
            self._lease = None

    def __enter__(self) -> "MockLLM":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self, timeout: float = 5.0) -> None:
        """Between tests: release gates, close streams, wait for handlers, clear scripts and the log."""
        with self._lock:
            self._gen += 1
        self.release_all()
        leaked = not self._wait_handlers(timeout)
        with self._lock:
            self._scripts.clear()
            self._records.clear()
            self._unexpected.clear()
            self._default = list(DEFAULT_PLAN)
        if leaked:
            raise MockLLMLeak("mock LLM handlers still running after reset")

    def _wait_handlers(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no handler runs; raises TimeoutError naming the open requests."""
        if not self._wait_handlers(timeout):
            with self._lock:
                open_ = [(r.seq, r.kind, r.outcome) for r in self._records if r.open]
            raise TimeoutError(f"mock LLM requests still open after {timeout}s: {open_}")

    # -- scripting ------------------------------------------------------------------------------
    def script(self, match: Matcher, steps: Iterable[Step], *, times: int = 1) -> Script:
        """Queue ``times`` replies for requests matching ``match`` (``title``, ``main``, ``any`` or a predicate)."""
        if isinstance(match, str) and match not in ("title", "main", "any"):
            raise MockLLMError(f"script match={match!r}: expected 'title', 'main', 'any' or a callable(body)")
        plan = list(steps)
        for s in plan:
            if not isinstance(s, Step):
                raise MockLLMError(f"script step {s!r}: expected a step from pytest_cbchaos.servers.mockllm")
        if times < 1:
            raise MockLLMError(f"script times={times!r}: expected >= 1")
        plans: list[list[Step]] = []
        for i in range(times):
            # each repetition gets fresh gates so releasing one does not release the next
            plans.append([s if i == 0 or s.gate is None else Step(s.kind, s.args, Gate()) for s in plan])
        gates = [s.gate for p in plans for s in p if s.gate is not None]
        with self._lock:
            for sc in self._scripts:
                if sc.matcher is match or (isinstance(match, str) and sc.matcher == match):
                    sc.plans.extend(plans)
                    sc.gates.extend(gates)
                    return sc
            sc = Script(match, deque(plans), gates)
            self._scripts.append(sc)
            return sc

    def set_default(self, steps: Iterable[Step]) -> None:
        self._default = list(steps)

    def pending(self) -> int:
        """Scripted replies not yet consumed."""
        with self._lock:
            return sum(len(s.plans) for s in self._scripts)

    def release_all(self) -> None:
        with self._lock:
            gates = [g for s in self._scripts for g in s.gates] + [g for r in self._records for g in r.gates]
        for g in gates:
            g.release()

    # -- assertions -----------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    @property
    def unexpected(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._unexpected)

    def _wait(self, found: Callable[[], T | None], timeout: float, failure: Callable[[], str]) -> T:
        """Wait (on the records' condition) until ``found()`` is not None; raises TimeoutError(``failure()``)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                value = found()
                if value is not None:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(failure())
                self._lock.wait(min(left, 0.1))

    def _seen(self) -> list[tuple[int, str, str | None]]:
        return [(r.seq, r.kind, r.outcome) for r in self._records]

    def _record(self, seq: int) -> RequestRecord | None:
        return next((r for r in self._records if r.seq == seq), None)

    def wait_for(self, kind: str = "any", count: int = 1, timeout: float = 10.0) -> list[RequestRecord]:
        """Wait until at least ``count`` requests of ``kind`` arrived; returns them."""
        def got() -> list[RequestRecord]:
            return [r for r in self._records if kind in (r.kind, "any")]

        return self._wait(lambda: got() if len(got()) >= count else None, timeout,
                          lambda: f"mock LLM: {len(got())} {kind} request(s) after {timeout}s, wanted {count}; "
                                  f"seen: {self._seen()}")

    def wait_stalled(self, kind: str = "main", timeout: float = 10.0) -> RequestRecord:
        """Wait until a request of ``kind`` sits in a stall nobody released yet; returns its record."""
        return self._wait(lambda: next((r for r in self._records if kind in (r.kind, "any") and r.outcome == "stalled"
                                        and not all(g.released for g in r.gates)), None), timeout,
                          lambda: f"mock LLM: no {kind} request in a stall after {timeout}s; seen: {self._seen()}")

    def wait_client_closed(self, seq: int, timeout: float = 5.0) -> RequestRecord:
        """Wait until request ``seq`` was closed by the client (or finished); returns its record."""
        def closed() -> RequestRecord | None:
            rec = self._record(seq)
            return rec if rec is not None and (rec.client_closed_at is not None or rec.finished_at is not None) else None

        return self._wait(closed, timeout, lambda: f"mock LLM request {seq} still open after {timeout}s: "
                                                   f"{self._record(seq)}")

    def wait_outcome(self, seq: int, timeout: float = 5.0) -> RequestRecord:
        """Wait until request ``seq`` finished (handler returned)."""
        def finished() -> RequestRecord | None:
            rec = self._record(seq)
            return rec if rec is not None and rec.finished_at is not None else None

        return self._wait(finished, timeout, lambda: f"mock LLM request {seq} not finished after {timeout}s: "
                                                     f"{self._record(seq)}")

    async def await_for(self, kind: str = "any", count: int = 1, timeout: float = 10.0) -> list[RequestRecord]:
        return await asyncio.to_thread(self.wait_for, kind, count, timeout)

    async def await_client_closed(self, seq: int, timeout: float = 5.0) -> RequestRecord:
        return await asyncio.to_thread(self.wait_client_closed, seq, timeout)

    def last_user_text(self, kind: str = "main") -> str | None:
        with self._lock:
            for r in reversed(self._records):
                if kind in (r.kind, "any"):
                    return r.user_text()
        return None

    # -- handlers -------------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        if not self.require_key:
            return True
        auth = request.headers.get("Authorization", "")
        return secrets.compare_digest(auth, f"Bearer {self.api_key}") or secrets.compare_digest(
            request.headers.get("x-api-key", ""), self.api_key)

    @staticmethod
    def _error(status: int, message: str, etype: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": etype, "code": status}}, status=status)

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._error(404, f"unknown route {request.method} {request.path}", "invalid_request_error")

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "invalid api key", "invalid_api_key")
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "cbchaos"}]})

    def _take_plan(self, kind: str, body: Any) -> tuple[list[Step], bool]:
        with self._lock:
            for sc in self._scripts:
                if sc.plans and sc.matches(kind, body):
                    return sc.plans.popleft(), True
            return list(self._default), False

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = raw.decode(errors="replace")
        kind = _classify(body)
        plan, scripted = self._take_plan(kind, body)
        unexpected = self.strict and not scripted
        with self._lock:
            self._seq += 1
            rec = RequestRecord(seq=self._seq, kind=kind, path=request.path, received_at=time.monotonic(),
                                body=copy.deepcopy(body), headers=_redact(request.headers),
                                plan=[s.describe() for s in plan],
                                stream=bool(isinstance(body, dict) and body.get("stream")),
                                gates=[s.gate for s in plan if s.gate is not None])
            self._records.append(rec)
            if unexpected:
                self._unexpected.append(rec)
            self._running.add(rec.seq)
            gen = self._gen
            self._lock.notify_all()
        try:
            if not self._authorized(request):
                rec.http_status, rec.outcome = 401, "http_error"
                return self._error(401, "invalid api key", "invalid_api_key")
            if unexpected:
                rec.http_status, rec.outcome = 500, "http_error"
                return self._error(500, f"cbchaos mock: unexpected {kind} request #{rec.seq} (strict mode)",
                                   "server_error")
            if not isinstance(body, dict):
                rec.http_status, rec.outcome = 400, "http_error"
                return self._error(400, "request body is not a JSON object", "invalid_request_error")
            return await _Reply(self, request, rec, plan, gen).run()
        finally:
            with self._lock:
                rec.finished_at = time.monotonic()
                if rec.outcome is None:
                    rec.outcome = "completed"
                self._running.discard(rec.seq)
                self._lock.notify_all()

    def _cancelled(self, gen: int) -> bool:
        return self._stopping.is_set() or gen != self._gen

    def _note(self, rec: RequestRecord, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(rec, k, v)
            self._lock.notify_all()


class _Reply:
    """Runs one plan against one request."""

    def __init__(self, mock: MockLLM, request: web.Request, rec: RequestRecord, plan: list[Step], gen: int) -> None:
        self.mock, self.request, self.rec, self.plan, self.gen = mock, request, rec, plan, gen
        self.resp: web.StreamResponse | None = None
        self.cid = "chatcmpl-" + secrets.token_hex(8)
        self.created = int(time.time())
        self.role_sent = False
        self.tool_index = 0
        self.disconnect_left: int | None = None
        self.disconnect_mode = "fin"
        self.released = False
        self.text_parts: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []

    # -- transport --------------------------------------------------------------------------
    def client_gone(self) -> bool:
        tr = self.request.transport
        return tr is None or tr.is_closing()

    def _mark_closed(self) -> None:
        if self.rec.client_closed_at is None:
            self.mock._note(self.rec, client_closed_at=time.monotonic(), outcome="client_closed")

    async def pause(self, seconds: float | None, gate: Gate | None = None) -> None:
        """Sleep while polling for a client close (and the gate); raises _Closed when the client left."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            if self.client_gone():
                self._mark_closed()
                raise _Closed()
            if gate is not None and gate.released:
                self.released = True
                return
            if self.mock._cancelled(self.gen):
                if gate is not None:
                    return
                raise _Closed()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                await asyncio.sleep(min(_POLL_S, left))
            else:
                await asyncio.sleep(_POLL_S)

    async def headers(self) -> web.StreamResponse:
        if self.resp is None:
            resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                           "Cache-Control": "no-cache"})
            await resp.prepare(self.request)
            self.resp = resp
            self.mock._note(self.rec, http_status=200)
        return self.resp

    async def write(self, data: bytes, counts: bool = True) -> None:
        resp = await self.headers()
        if self.client_gone():
            self._mark_closed()
            raise _Closed()
        try:
            await resp.write(data)
        except (ConnectionError, RuntimeError):
            self._mark_closed()
            raise _Closed() from None
        if counts:
            self.mock._note(self.rec, chunks_sent=self.rec.chunks_sent + 1)
            if self.disconnect_left is not None:
                self.disconnect_left -= 1
                if self.disconnect_left <= 0:
                    self.drop()

    def drop(self) -> None:
        tr = self.request.transport
        if tr is not None:
            if self.disconnect_mode == "rst":
                sock = tr.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                tr.abort()
            else:
                tr.close()
        self.mock._note(self.rec, outcome="disconnected")
        raise _Disconnected()

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None,
              usage: dict[str, int] | None = None) -> bytes:
        obj: dict[str, Any] = {"id": self.cid, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.mock.model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    async def content(self, piece: str) -> None:
        self.text_parts.append(piece)
        if not self.rec.stream:
            return
        delta: dict[str, Any] = {"content": piece}
        if not self.role_sent:
            delta = {"role": "assistant", "content": piece}
            self.role_sent = True
        await self.write(self.chunk(delta))

    # -- plan -------------------------------------------------------------------------------
    async def run(self) -> web.StreamResponse:
        plan = list(self.plan)
        kinds = [s.kind for s in plan]
        if "finish" not in kinds and "http_error" not in kinds:
            plan.append(finish("tool_calls" if "tool_call" in kinds else "stop"))
        try:
            for step in plan:
                resp = await self.step(step)
                if resp is not None:
                    return resp
            if not self.rec.stream:
                return self.nonstream("stop")
        except _Closed:
            if self.rec.outcome is None or self.rec.outcome == "client_closed":
                self._mark_closed() if self.client_gone() else self.mock._note(self.rec, outcome="stalled")
        except _Disconnected:
            pass
        if self.resp is None:
            return web.Response(status=499)  # never sent: the client is gone
        return self.resp

    async def step(self, s: Step) -> web.StreamResponse | None:
        a = s.args
        if s.kind == "ttfb":
            await self.pause(a["seconds"])
        elif s.kind == "text":
            t, n = a["text"], a["chunks"]
            size = max(1, -(-len(t) // n)) if t else 0
            pieces = [t[i:i + size] for i in range(0, len(t), size)] if t else [""]
            for i, piece in enumerate(pieces):
                if i and a["delay"]:
                    await self.pause(a["delay"])
                await self.content(piece)
        elif s.kind == "tokens":
            for i, piece in enumerate(a["tokens"]):
                if i and a["delay"]:
                    await self.pause(a["delay"])
                await self.content(piece)
        elif s.kind == "tool_call":
            call = {"index": self.tool_index, "id": "call_" + secrets.token_hex(6), "type": "function",
                    "function": {"name": a["name"], "arguments": a["arguments"]}}
            self.tool_index += 1
            self.tool_calls.append(call)
            if self.rec.stream:
                delta: dict[str, Any] = {"tool_calls": [call]}
                if not self.role_sent:
                    delta["role"] = "assistant"
                    self.role_sent = True
                await self.write(self.chunk(delta))
        elif s.kind == "stall":
            if self.rec.stream:
                await self.headers()  # a stall happens inside a started stream; use ttfb() before headers
            await self.pause(a["seconds"])
        elif s.kind == "stall_forever":
            if self.rec.stream:
                await self.headers()
            self.mock._note(self.rec, outcome="stalled")
            await self.pause(None, gate=s.gate)
            if self.mock._cancelled(self.gen) and not self.released:
                raise _Closed()
            self.mock._note(self.rec, outcome="released")
        elif s.kind == "disconnect":
            self.disconnect_mode = a["mode"]
            self.disconnect_left = a["after_chunks"]
            if a["after_chunks"] == 0:
                await self.headers()
                self.drop()
        elif s.kind == "http_error":
            if self.resp is not None:
                raise MockLLMError(f"request {self.rec.seq}: http_error after the stream started")
            headers = {}
            if a["retry_after"] is not None:
                headers["Retry-After"] = str(a["retry_after"]).removesuffix(".0")
            body = a["body"]
            self.mock._note(self.rec, http_status=a["status"], outcome="http_error")
            if isinstance(body, dict):
                return web.json_response(body, status=a["status"], headers=headers)
            return web.Response(text=str(body), status=a["status"], headers=headers)
        elif s.kind == "malformed":
            await self.write(a["raw"])
        elif s.kind == "finish":
            reason, usage = a["reason"], a["usage"]
            if usage is None:
                prompt = 10
                completion = max(1, len("".join(self.text_parts)) // 4)
                usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                         "total_tokens": prompt + completion}
            if not self.rec.stream:
                return self.nonstream(reason, usage)
            await self.write(self.chunk({}, finish_reason=reason, usage=usage))
            await self.write(b"data: [DONE]\n\n", counts=False)
            if self.released:
                self.mock._note(self.rec, outcome="released")
            elif self.rec.outcome not in ("released",):
                self.mock._note(self.rec, outcome="completed")
            await self.resp.write_eof()  # type: ignore[union-attr]
            return self.resp
        else:  # pragma: no cover - constructors prevent this
            raise MockLLMError(f"unknown step {s.kind!r}")
        return None

    def nonstream(self, reason: str, usage: dict[str, int] | None = None) -> web.Response:
        msg: dict[str, Any] = {"role": "assistant", "content": "".join(self.text_parts)}
        if self.tool_calls:
            msg["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in self.tool_calls]
        self.mock._note(self.rec, http_status=200, outcome="released" if self.released else "completed")
        return web.json_response({"id": self.cid, "object": "chat.completion", "created": self.created,
                                  "model": self.mock.model,
                                  "choices": [{"index": 0, "message": msg, "finish_reason": reason}],
                                  "usage": usage or {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}})


class _Disconnected(Exception):
    """The plan dropped the connection on purpose."""


__all__ = [
    "Gate", "MockLLM", "api_key_for", "MockLLMError", "MockLLMLeak", "RequestRecord", "Script", "Step",
    "disconnect", "finish", "http_error", "malformed", "stall", "stall_forever", "text", "tokens", "tool_call",
    "ttfb",
]
