"""Mutants M4, M6, M7, M8, M10, M11 and invariants INV-6, 8, 11, 14, 15 at unit level.

Each bug shows against ``FakeOpencode``: a small scripted HTTP server speaking the opencode API
subset of docs/opencode-design.md#server-api (``/event`` SSE with heartbeats, sessions, ``prompt_async``, status,
messages, abort) whose handle the runner can "kill" and "restart". The real runner passes each scenario; each
mutant fails the state machine's ``check_turn`` with the named invariant. No real opencode, so the
whole module runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from typing import Any, Callable

import pytest
from aiohttp import web

from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner
from pytest_cbchaos.recovery.attempt import CONSUMERS
from pytest_cbchaos.recovery.status import Liveness, RunStatus, TurnResult
from pytest_cbchaos.stateful.recovery_machine import Expectation, InvariantViolation, check_turn
from pytest_cbchaos.testing.runner_mutants import MUTANTS
from pytest_cbchaos.servers.ports import allocate_port

pytestmark = pytest.mark.timeout(60)


class FakeOpencode:
    """Scripted opencode API subset; also the server handle (liveness, restart, generation).

    Plans, one per prompt (FIFO, default ``ok``): ``ok``; ``retry`` (a provider retry status for
    ``retry_s`` then ok); ``stall`` (busy, one delta, then only heartbeats until aborted);
    ``dead`` (the handle reports the process dead); ``gappy`` (deltas ``gap_s`` apart, no heartbeat);
    ``cold`` (a bootstrapping server, as opencode 1.18.33 behaves: accepted, then no event, message
    nor status for ``cold_s`` seconds, or until aborted when ``cold_s`` is None; then the user message,
    busy and an empty assistant message, ``late_s`` more of silence, then ok); ``cold_dead`` (the
    process dies during that silent bootstrap); ``mute`` (a model that never answers: the user
    message, busy and an empty assistant message, then only heartbeats).
    """

    password = "fake-secret"

    def __init__(self) -> None:
        self.plans: deque[str] = deque()
        self.heartbeat_s = 0.25
        self.retry_s = 1.2
        self.gap_s = 0.6
        self.child_steps = 6  # 6 x 0.4 s of child-only activity > stall_timeout 1.5 s
        self.prompt_delay_s = 0.0  # prompt_async answers 204 this late (accepted at once)
        self.cold_s: float | None = 2.5  # silent bootstrap of a ``cold`` plan; None = until aborted
        self.late_s = 2.5  # then silence after the empty assistant message (before the model's first part)
        self.finish = "stop"  # the step-finish reason of every answer
        self.create_status: int | None = None  # POST /session answers this HTTP status
        self.generation = 1
        self.dead = False
        self.status: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.prompts: list[tuple[str, str]] = []
        self.open_events = 0
        self.event_connections = 0
        self._subs: set[asyncio.Queue[dict[str, Any]]] = set()
        self._turns: dict[str, asyncio.Task[None]] = {}
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fake-opencode")
        self._lease = allocate_port()
        self.port = self._lease.port
        self._runner: web.AppRunner | None = None
        self._hb: asyncio.Task[None] | None = None

    # -- handle API ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str]:
        return ("opencode", self.password)

    @property
    def headers(self) -> dict[str, str]:
        return {"x-opencode-directory": "/fake/project"}

    def liveness(self) -> Liveness:
        return Liveness.DEAD if self.dead else Liveness.ALIVE

    def restart(self) -> None:
        asyncio.run_coroutine_threadsafe(self._restart(), self._loop).result(5)

    async def _restart(self) -> None:
        for task in self._turns.values():
            task.cancel()
        self._turns.clear()
        self.status.clear()
        self.dead = False
        self.generation += 1

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "FakeOpencode":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/event", self._events)
        app.router.add_get("/global/health", self._health)
        app.router.add_post("/session", self._create)
        app.router.add_get("/session/status", self._status)
        app.router.add_post("/session/{sid}/prompt_async", self._prompt)
        app.router.add_get("/session/{sid}/message", self._messages)
        app.router.add_post("/session/{sid}/abort", self._abort)
        app.router.add_delete("/session/{sid}", self._delete)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        self._lease.release()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._hb = asyncio.get_running_loop().create_task(self._heartbeats())

    def stop(self) -> None:
        async def _stop() -> None:
            for task in [*self._turns.values(), *([self._hb] if self._hb else [])]:
                task.cancel()
            for q in list(self._subs):
                q.put_nowait({"type": "__close__"})
            if self._runner is not None:
                await self._runner.cleanup()
        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def call(self, fn: Callable[[], Any]) -> Any:
        async def _c() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(_c(), self._loop).result(5)

    def wait_events_closed(self, timeout: float) -> int:
        """Open ``/event`` connections once they drop to zero or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self.open_events and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a condition with a deadline
        return self.open_events

    def user_messages(self, sid: str | None, text: str) -> int:
        return sum(1 for m in self.messages.get(sid or "", []) if m["info"]["role"] == "user"
                   and any(text in p.get("text", "") for p in m["parts"]))

    # -- events ----------------------------------------------------------------------------------
    def publish(self, etype: str, **props: Any) -> None:
        ev = {"id": f"evt_{next(self._ids):08d}", "type": etype, "properties": props}
        for q in list(self._subs):
            q.put_nowait(ev)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s if self.heartbeat_s > 0 else 0.05)
            if self.heartbeat_s > 0:
                self.publish("server.heartbeat")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subs.add(q)
        self.open_events += 1
        self.event_connections += 1
        try:
            await resp.write(b'data: {"id": "evt_c", "type": "server.connected", "properties": {}}\n\n')
            while True:
                try:
                    ev = await asyncio.wait_for(q.get(), 0.1)
                except asyncio.TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break
                    continue
                if ev.get("type") == "__close__":
                    break
                await resp.write(f"data: {json.dumps(ev)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subs.discard(q)
            self.open_events -= 1
        return resp

    # -- control plane ---------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"healthy": True, "version": "fake"})

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status)

    async def _delete(self, request: web.Request) -> web.Response:
        return web.json_response(True)

    async def _create(self, request: web.Request) -> web.Response:
        if self.create_status is not None:
            return web.json_response({"error": "scripted"}, status=self.create_status)
        sid = f"ses_{next(self._ids):06d}"
        self.messages[sid] = []
        self.publish("session.updated", sessionID=sid, info={"id": sid, "time": {}})
        return web.json_response({"id": sid})

    async def _messages(self, request: web.Request) -> web.Response:
        return web.json_response(self.messages.get(request.match_info["sid"], []))

    async def _abort(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        task = self._turns.pop(sid, None)
        if task is not None:
            task.cancel()
        self._idle(sid)
        return web.json_response(True)

    async def _prompt(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        body = await request.json()
        text = " ".join(p.get("text", "") for p in body.get("parts", []))
        self.prompts.append((sid, text))
        plan = self.plans.popleft() if self.plans else "ok"
        if plan in ("cold", "cold_dead"):
            self._turns[sid] = asyncio.get_running_loop().create_task(self._cold(sid, text, plan))
            return web.Response(status=204)
        self._begin(sid, text, plan)
        if self.prompt_delay_s:
            delay, self.prompt_delay_s = self.prompt_delay_s, 0.0  # only the first prompt is slow
            await asyncio.sleep(delay)  # scripted control-plane latency after acceptance
        return web.Response(status=204)

    async def _cold(self, sid: str, text: str, plan: str) -> None:
        if plan == "cold_dead":
            self.dead = True
            await asyncio.Event().wait()
        if self.cold_s is None:
            await asyncio.Event().wait()  # bootstrap never ends: only an abort or restart stops it
        await asyncio.sleep(self.cold_s)  # scripted bootstrap: no event, message nor status
        self._turns.pop(sid, None)
        self._begin(sid, text, "late")

    def _begin(self, sid: str, text: str, plan: str) -> None:
        uid = f"msg_u{next(self._ids):06d}"
        self.messages[sid].append({"info": {"id": uid, "role": "user", "sessionID": sid},
                                   "parts": [{"id": f"prt_{uid}", "type": "text", "text": text}]})
        self.publish("message.updated", info={"id": uid, "role": "user", "sessionID": sid})
        self.publish("message.part.updated", part={"id": f"prt_{uid}", "messageID": uid, "sessionID": sid,
                                                   "type": "text", "text": text})
        self._set(sid, {"type": "busy"})
        self._turns[sid] = asyncio.get_running_loop().create_task(self._turn(sid, uid, plan))

    def _set(self, sid: str, st: dict[str, Any]) -> None:
        self.status[sid] = st
        self.publish("session.status", sessionID=sid, status=st)

    def _idle(self, sid: str) -> None:
        self.status.pop(sid, None)
        self.publish("session.status", sessionID=sid, status={"type": "idle"})
        self.publish("session.idle", sessionID=sid)

    async def _turn(self, sid: str, uid: str, plan: str) -> None:
        if plan == "dead":
            self.dead = True
            await asyncio.Event().wait()
        if plan == "child":  # a subagent session streams while ours is silent past stall_timeout
            tid = f"msg_t{next(self._ids):06d}"  # the model's answer starts (the step that calls the subagent)
            self.publish("message.part.updated", part={"id": f"prt_{tid}", "messageID": tid, "sessionID": sid,
                                                       "type": "step-start"})
            cid = f"ses_c{next(self._ids):06d}"
            self.publish("session.updated", sessionID=cid, info={"id": cid, "parentID": sid, "time": {}})
            for i in range(self.child_steps):
                await asyncio.sleep(0.4)  # scripted child pacing
                self.publish("message.part.delta", sessionID=cid, messageID=f"msg_c{cid}", partID=f"prt_c{cid}",
                             field="text", delta=f"child {i} ")
        if plan == "retry":
            self._set(sid, {"type": "retry", "attempt": 1, "message": "429",
                            "next": (time.time() + self.retry_s) * 1000})
            await asyncio.sleep(self.retry_s)  # scripted provider retry period
            self._set(sid, {"type": "busy"})
        aid = f"msg_a{next(self._ids):06d}"
        info: dict[str, Any] = {"id": aid, "role": "assistant", "parentID": uid, "sessionID": sid,
                                "time": {"created": time.time() * 1000}}
        entry = {"info": info, "parts": []}
        self.messages[sid].append(entry)
        self.publish("message.updated", info=dict(info))
        if plan == "mute":
            await asyncio.Event().wait()  # the model never answers: only heartbeats, until aborted
        if plan == "late":
            await asyncio.sleep(self.late_s)  # scripted: the rest of a cold bootstrap, before the first part
        pid = f"prt_{aid}"
        text = "hello from fake"
        entry["parts"].append({"id": pid, "messageID": aid, "sessionID": sid, "type": "text", "text": ""})
        pieces = [text[:5], text[5:10], text[10:]] if plan == "gappy" else [text]
        for i, piece in enumerate(pieces):
            if i and plan == "gappy":
                await asyncio.sleep(self.gap_s)  # scripted pacing below stall_timeout
            entry["parts"][0]["text"] += piece
            self.publish("message.part.delta", sessionID=sid, messageID=aid, partID=pid, field="text", delta=piece)
            if plan == "stall":
                await asyncio.Event().wait()  # only heartbeats from here on, until aborted
        fin = {"id": f"prt_f{aid}", "messageID": aid, "sessionID": sid, "type": "step-finish", "reason": self.finish}
        entry["parts"].append(fin)
        self.publish("message.part.updated", part=fin)
        info["time"]["completed"] = time.time() * 1000
        info["finish"] = self.finish
        self.publish("message.updated", info=dict(info))
        self._turns.pop(sid, None)
        self._idle(sid)


@pytest.fixture
def fake() -> Any:
    srv = FakeOpencode().start()
    yield srv
    srv.stop()
    assert CONSUMERS.live() == {}


FAST = dict(tick=0.1, stall_timeout=1.5, probe_timeout=0.4, heartbeat_interval=0.5, sse_silence_timeout=2.0,
            request_timeout=1.0, idle_poll_interval=0.5, idle_grace=0.3, abort_grace=1.0,
            consumer_stop_timeout=1.0, sse_connect_timeout=1.0, subscribe_timeout=2.0, start_timeout=2.0)


def run(fake: FakeOpencode, runner_cls: type[RecoveryRunner], exp: Expectation,
        **cfg: Any) -> tuple[TurnResult, float, int, int]:
    """One turn; returns (result, elapsed, open /event connections after return, user messages)."""
    runner = runner_cls(fake, RecoveryConfig.for_tests(**{**FAST, "max_recoveries": exp.max_recoveries, **cfg}))
    try:
        t0 = time.monotonic()
        res = runner.run_turn(exp.prompt)
        elapsed = time.monotonic() - t0
        open_conns = fake.wait_events_closed(1.5)  # before close(): the runner's loop still runs
        users = fake.call(lambda: fake.user_messages(res.session_id, exp.prompt))
    finally:
        runner.close()
    return res, elapsed, open_conns, users


def expect(fault: str, budget: int = 1, bound: float = 20.0, **kw: Any) -> Expectation:
    return Expectation(fault, f"fake turn {fault} token-{time.monotonic_ns()}", budget, FAST["stall_timeout"],
                       bound, **kw)


def check(fake: FakeOpencode, runner_cls: type[RecoveryRunner], exp: Expectation, **cfg: Any) -> TurnResult:
    res, elapsed, open_conns, users = run(fake, runner_cls, exp, **cfg)
    check_turn(exp, res, elapsed, [], user_messages=users if res.session_id else None,
               open_event_connections=open_conns)
    return res


# -- scenarios: (setup, expectation factory, extra config) ---------------------------------------
def _stall(fake: FakeOpencode) -> None:
    fake.plans.extend(["stall"])


def _retry(fake: FakeOpencode) -> None:
    fake.plans.extend(["retry"])


def _dead_then_stall(fake: FakeOpencode) -> None:
    fake.plans.extend(["dead", "stall", "ok"])


def _slow_accept(fake: FakeOpencode) -> None:
    fake.prompt_delay_s = 1.6  # > request_timeout: the client times out, the prompt was accepted


def _gappy(fake: FakeOpencode) -> None:
    fake.heartbeat_s = 0  # no heartbeats: the gaps are real silence on the socket
    fake.plans.extend(["gappy"])


def _ok(fake: FakeOpencode) -> None:
    fake.plans.extend(["ok"])


SCENARIOS: dict[str, tuple[Callable[[FakeOpencode], None], Callable[[], Expectation]]] = {
    # INV-5 with heartbeats flowing every 0.25 s; budget 0 so the stall is the final verdict
    "stall_with_heartbeats": (_stall, lambda: expect("stall_hb", 0, bound=8, first_verdict=RunStatus.SESSION_STALLED,
                                                     stall_window=True, final_status={RunStatus.SESSION_STALLED})),
    # INV-6: a provider retry period (no events but heartbeats) is active, never idle
    "provider_retry": (_retry, lambda: expect("provider_retry", 1, final_status={RunStatus.OK},
                                              no_recovery=True, retry_active=True)),
    # INV-6: child-session activity is progress, never a stall
    "child_activity": (lambda f: f.plans.extend(["child"]),
                       lambda: expect("child_activity", 1, final_status={RunStatus.OK}, no_recovery=True,
                                      retry_active=True)),
    # INV-2: death then stall with budget 1 -> exactly one recovery, then non-zero
    "death_then_stall": (_dead_then_stall, lambda: expect("death_then_stall", 1, bound=15,
                                                          first_verdict=RunStatus.SERVER_UNREACHABLE,
                                                          final_status={RunStatus.SESSION_STALLED})),
    # INV-14: prompt_async times out after acceptance -> one user message
    "accepted_timeout": (_slow_accept, lambda: expect("accepted_timeout", 1, final_status={RunStatus.OK},
                                                      no_recovery=True)),
    # INV-8: gaps below sse_silence_timeout (no heartbeats) keep one connection
    "gappy_stream": (_gappy, lambda: expect("gappy", 1, final_status={RunStatus.OK}, no_recovery=True,
                                            one_connection=True)),
    # INV-11: a normal turn; no /event connection outlives run_turn
    "normal": (_ok, lambda: expect("normal", 1, final_status={RunStatus.OK}, no_recovery=True)),
}


def _child_blind_runner() -> type[RecoveryRunner]:
    """Extra mutant (INV-6): child-session events are ignored, so subagent work looks like a stall."""
    from pytest_cbchaos.recovery.attempt import Attempt
    from pytest_cbchaos.recovery.supervisor import AsyncRecoveryRunner
    from pytest_cbchaos.recovery.tracker import event_owner

    def _on_event(self: Any, event: dict[str, Any]) -> None:
        if self.tracker is None or event_owner(event) in (None, self.tracker.session_id):
            Attempt._on_event(self, event)

    attempt = type("_ChildBlindAttempt", (Attempt,), {"_on_event": _on_event})
    core = type("_ChildBlindCore", (AsyncRecoveryRunner,), {"attempt_class": attempt})
    return type("ChildBlind", (RecoveryRunner,), {"async_class": core})


EXTRA_MUTANTS: dict[str, Callable[[], type[RecoveryRunner]]] = {"child_blind": _child_blind_runner}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_real_runner_passes_scenario(fake: FakeOpencode, scenario: str) -> None:
    setup, exp = SCENARIOS[scenario]
    setup(fake)
    check(fake, RecoveryRunner, exp())


MUTANT_CASES = [
    ("M4", "gappy_stream", "INV-8"),
    ("M6", "stall_with_heartbeats", "INV-4/5/17 classification|INV-5"),
    ("M7", "provider_retry", "INV-6"),
    ("M8", "normal", "INV-11"),
    ("M10", "death_then_stall", "INV-2"),
    ("M11", "accepted_timeout", "INV-14"),
    ("child_blind", "child_activity", "INV-6"),
]


@pytest.mark.parametrize("name,scenario,invariant", MUTANT_CASES, ids=[c[0] for c in MUTANT_CASES])
def test_check_turn_catches_mutant(fake: FakeOpencode, name: str, scenario: str, invariant: str) -> None:
    setup, exp = SCENARIOS[scenario]
    setup(fake)
    cls = EXTRA_MUTANTS[name]() if name in EXTRA_MUTANTS else MUTANTS[name]
    # M6 never sees the stall: the hard cap ends the turn instead, so the test stays bounded
    cfg = {"max_turn_seconds": 4} if name == "M6" else {}
    with pytest.raises(InvariantViolation, match=invariant):
        check(fake, cls, exp(), **cfg)


def test_control_plane_4xx_is_error_without_recovery(fake: FakeOpencode) -> None:
    """INV-15: a 400 from POST /session is ERROR, no recovery, no retry in place."""
    fake.create_status = 400
    res = check(fake, RecoveryRunner, expect("create_400", 2, final_status={RunStatus.ERROR}, no_recovery=True))
    assert res.attempts[-1].reason == "request_error"


def test_inv15_check_catches_recovered_4xx() -> None:
    """The INV-15 check itself: a result that 'recovered' from a 400 is a violation."""
    from pytest_cbchaos.recovery.status import AttemptRecord

    bad = AttemptRecord(n=1, generation=1, prompt="p", started_at=0.0)
    bad.verdict, bad.reason, bad.evidence = RunStatus.ERROR, "request_error", {"http_status": 400}
    good = AttemptRecord(n=2, generation=2, prompt="p", started_at=1.0)
    good.verdict, good.reason = RunStatus.OK, "stop"
    res = TurnResult(status=RunStatus.OK, finish_reason="stop", session_id="ses_x", text="", tokens=None,
                     idle_confirmed="sse", recoveries_used=1, budget_exhausted=False, error=None,
                     attempts=[bad, good])
    with pytest.raises(InvariantViolation, match="INV-15"):
        check_turn(expect("create_400", 1), res, 1.0, [])


# -- INV-19 and M12: launcher teardown, with a stand-in ``opencode`` binary -----------------------
FAKE_SERVE = '''\
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port = int(sys.argv[sys.argv.index("--port") + 1])
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"healthy": True, "version": "1.18.33"}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
print("fake opencode serve on", port, flush=True)
HTTPServer(("127.0.0.1", port), H).serve_forever()
'''


@pytest.fixture
def fake_binary(tmp_path: Any) -> Any:
    """An executable that answers ``/global/health`` like ``opencode serve`` (launcher logic only)."""
    import stat
    import sys
    from pathlib import Path

    from pytest_cbchaos.servers.opencode import OpencodeBinary

    script = Path(tmp_path) / "opencode"
    script.write_text(f"#!{sys.executable}\n{FAKE_SERVE}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return OpencodeBinary(path=script, version="1.18.33")


def _restarts(server: Any, n: int) -> None:
    server.start()
    for _ in range(n):
        server.restart()
    server.stop()


def test_launcher_teardown_is_clean(tmp_path: Any, fake_binary: Any) -> None:
    """INV-19: after restarts and stop, no handle, every log has its exit record, fds flat."""
    from pytest_cbchaos.servers.opencode import OpencodeServer
    from pytest_cbchaos.stateful.recovery_machine import check_clean_teardown, open_fds

    server = OpencodeServer(root=tmp_path / "oc", provider_url="http://127.0.0.1:9/v1", binary=fake_binary,
                            warm=False, stop_grace=1.0)
    server.start()
    server.stop()
    baseline = len(open_fds())
    _restarts(server, 3)
    assert len(server.log_paths) == 5
    check_clean_teardown(server, fd_baseline=baseline)


def test_check_clean_teardown_catches_m12(tmp_path: Any, fake_binary: Any) -> None:
    from pytest_cbchaos.stateful.recovery_machine import check_clean_teardown, open_fds
    from pytest_cbchaos.testing.runner_mutants import M12LogHandleKept

    server = M12LogHandleKept(root=tmp_path / "oc", provider_url="http://127.0.0.1:9/v1", binary=fake_binary,
                              warm=False, stop_grace=1.0)
    baseline = len(open_fds())
    try:
        _restarts(server, 3)
        with pytest.raises(InvariantViolation, match="INV-19"):
            check_clean_teardown(server, fd_baseline=baseline)
    finally:
        server.stop()
        server.release_leaked()


# -- cold start: the bootstrap before the first event is not a stall (docs/recovery.md) --------------
def test_cold_start_longer_than_stall_timeout_is_ok(fake: FakeOpencode) -> None:
    fake.plans.extend(["cold"])  # 2 x 2.5 s of silence (each > stall_timeout), far below the 60 s bootstrap
    res = check(fake, RecoveryRunner, expect("cold_start", 1, final_status={RunStatus.OK}, no_recovery=True,
                                             cold_start=True))
    assert len(res.attempts) == 1


def test_check_turn_catches_m15_stall_clock_at_acceptance(fake: FakeOpencode) -> None:
    fake.cold_s = None  # the bootstrap outlasts any stall clock: only an abort ends it
    fake.plans.extend(["cold", "ok"])
    with pytest.raises(InvariantViolation, match="cold start is not a stall") as info:
        check(fake, MUTANTS["M15"], expect("cold_start", 1, cold_start=True))
    assert "SESSION_STALLED" in str(info.value)


def test_never_answering_turn_is_stalled_by_first_event_timeout(fake: FakeOpencode) -> None:
    fake.plans.extend(["mute"])
    res, elapsed, _, _ = run(fake, RecoveryRunner, expect("silent", 0), first_event_timeout=3)
    first = res.attempts[0]
    assert (res.status, first.verdict, first.reason) == (RunStatus.SESSION_STALLED, RunStatus.SESSION_STALLED,
                                                         "first_event_timeout")
    assert 3.0 <= first.evidence["first_event_wait_s"] <= 4.0, first.evidence
    assert first.evidence["bootstrap_timeout_s"] == 3.0 and "last_progress_age_s" not in first.evidence


def test_check_turn_catches_m15_on_a_late_first_part(fake: FakeOpencode) -> None:
    """The second half of a cold start alone (user message seen, the model's first part late) is caught too."""
    fake.late_s = 30.0  # beyond any stall clock of the mutant; the abort ends it
    fake.plans.extend(["late", "ok"])
    with pytest.raises(InvariantViolation, match="cold start is not a stall"):
        check(fake, MUTANTS["M15"], expect("late_first_part", 1, cold_start=True))


def test_death_during_bootstrap_is_unreachable_at_once(fake: FakeOpencode) -> None:
    fake.plans.extend(["cold_dead", "ok"])
    res = check(fake, RecoveryRunner, expect("cold_dead", 1, first_verdict=RunStatus.SERVER_UNREACHABLE,
                                             final_status={RunStatus.OK}))
    first = res.attempts[0]
    assert first.evidence.get("liveness") == "dead", first.evidence
    assert first.ended_at - first.started_at < 10.0  # liveness per tick, not the 60 s bootstrap deadline


def test_silent_bootstrap_beyond_start_timeout_is_not_turn_not_started(fake: FakeOpencode) -> None:
    """A loaded opencode's bootstrap outlasts ``start_timeout`` (status lists no session, no event): the
    first-event deadline decides, never ``turn_not_started``. The bootstrap is held 3 x start_timeout."""
    fake.cold_s = 3 * FAST["start_timeout"]
    fake.plans.extend(["cold"])
    res = check(fake, RecoveryRunner, expect("cold_beyond_start_timeout", 0, final_status={RunStatus.OK},
                                             no_recovery=True, cold_start=True))
    assert [a.reason for a in res.attempts] == [res.finish_reason] and res.finish_reason != "turn_not_started", res
