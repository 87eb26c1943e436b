"""Test harness for the recovery tests: a tiny scripted OpenAI-compatible provider and a
launcher of real ``opencode serve`` built on ManagedProcess.

Used until/unless the shared ``cbchaos_mock_llm`` / ``cbchaos_opencode`` fixtures are available;
it covers exactly what these tests script: text replies with pacing, stall until released, HTTP
errors with Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import threading
import time
import urllib.request
from base64 import b64encode
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from pytest_cbchaos.recovery.handle import pid_liveness
from pytest_cbchaos.recovery.status import Liveness
from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.servers.process import ManagedProcess

OPENCODE_BIN = Path(__file__).resolve().parents[2] / ".cbchaos-node/node_modules/.bin/opencode"


@dataclass
class Plan:
    """One scripted reply: ``text`` in ``chunks`` with ``delay``; optional stall after ``stall_after`` chunks."""

    text: str = "ok"
    chunks: int = 1
    delay: float = 0.0
    stall_after: int | None = None  # stall after this many chunks, until released or stall_s
    stall_s: float | None = None  # None = until released
    hold_headers: bool = False  # stall before the response headers (the model never starts answering)
    http_status: int | None = None
    retry_after: float | None = None
    finish: str = "stop"


@dataclass
class Req:
    seq: int
    kind: str
    body: dict[str, Any]
    received_at: float
    client_closed_at: float | None = None
    finished_at: float | None = None
    outcome: str = "open"

    def user_text(self) -> str:
        msgs = self.body.get("messages") or []
        for m in reversed(msgs):
            if m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, list):
                    return " ".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
                return str(c)
        return ""


class MiniLLM:
    def __init__(self) -> None:
        self.plans: deque[Plan] = deque()
        self.requests: list[Req] = []
        self._lock = threading.Lock()
        self._gates: list[asyncio.Event] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._lease = allocate_port()
        self.port = self._lease.port
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "MiniLLM":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        self._lease.release()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        self.release_all()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def script(self, *plans: Plan) -> None:
        """Queue plans for *main* requests (title requests always get a quick default)."""
        with self._lock:
            self.plans.extend(plans)

    def reset(self) -> None:
        self.release_all()
        with self._lock:
            self.plans.clear()
            self.requests.clear()

    def release_all(self) -> None:
        with self._lock:  # synchronously, so a waiter never mistakes a released stall for a live one
            for r in self.requests:
                if r.outcome == "stalled":
                    r.outcome = "released"

        def _rel() -> None:
            for g in self._gates:
                g.set()
            self._gates.clear()
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(_rel)

    def main_requests(self) -> list[Req]:
        with self._lock:
            return [r for r in self.requests if r.kind == "main"]

    def wait_main(self, count: int, timeout: float) -> list[Req]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reqs = self.main_requests()
            if len(reqs) >= count:
                return reqs
            time.sleep(0.02)  # polling a condition with a deadline
        raise AssertionError(f"mock LLM saw {len(self.main_requests())} main requests, wanted {count}")

    def wait_stalled(self, timeout: float) -> Req:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.main_requests():
                if r.outcome == "stalled":
                    return r
            time.sleep(0.02)
        raise AssertionError("no main request reached its stall")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "mock"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        kind = "main" if body.get("tools") else "title"
        with self._lock:
            req = Req(len(self.requests) + 1, kind, body, time.monotonic())
            self.requests.append(req)
            plan = self.plans.popleft() if kind == "main" and self.plans else Plan(text="title" if kind == "title" else "ok")
        if plan.http_status:
            req.outcome, req.finished_at = "http_error", time.monotonic()
            headers = {"Retry-After": str(plan.retry_after)} if plan.retry_after is not None else {}
            return web.json_response({"error": {"message": f"mock {plan.http_status}", "type": "mock"}},
                                     status=plan.http_status, headers=headers)
        if plan.hold_headers:
            try:
                await self._stall(request, req, plan)
            except ConnectionResetError:
                req.outcome, req.finished_at = "client_closed", time.monotonic()
                raise
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        cid = f"chatcmpl-{req.seq}"

        def frame(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
            obj: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                                   "model": "mock", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage:
                obj["usage"] = usage
            return f"data: {json.dumps(obj)}\n\n".encode()

        try:
            await resp.write(frame({"role": "assistant", "content": ""}))
            pieces = _split(plan.text, plan.chunks)
            for i, piece in enumerate(pieces):
                if plan.stall_after is not None and i == plan.stall_after:
                    await self._stall(request, req, plan)
                await resp.write(frame({"content": piece}))
                if plan.delay:
                    await asyncio.sleep(plan.delay)  # scripted pacing
            if plan.stall_after is not None and plan.stall_after >= len(pieces):
                await self._stall(request, req, plan)
            await resp.write(frame({}, plan.finish, {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            req.outcome = "completed" if req.outcome == "open" else req.outcome
        except (ConnectionResetError, asyncio.CancelledError):
            req.outcome = "client_closed"
            req.client_closed_at = req.client_closed_at or time.monotonic()
            raise
        finally:
            req.finished_at = time.monotonic()
        return resp

    async def _stall(self, request: web.Request, req: Req, plan: Plan) -> None:
        gate = asyncio.Event()
        self._gates.append(gate)
        req.outcome = "stalled"
        deadline = None if plan.stall_s is None else time.monotonic() + plan.stall_s
        while not gate.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                req.client_closed_at = time.monotonic()
                raise ConnectionResetError("client closed during stall")
            if deadline is not None and time.monotonic() >= deadline:
                break
            try:
                await asyncio.wait_for(gate.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
        req.outcome = "released"


def _split(text: str, n: int) -> list[str]:
    n = max(1, min(n, len(text) or 1))
    size = -(-len(text) // n)
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


class OpencodeProc:
    """Real ``opencode serve`` in a private root; a handle the runner understands."""

    def __init__(self, root: Path, provider_url: str, binary: Path = OPENCODE_BIN) -> None:
        self.root = root
        self.password = secrets.token_hex(16)
        self.generation = 0
        self.provider_url = provider_url
        self.binary = binary
        for d in ("home", "config", "data", "cache", "state", "project", "logs", "tmp"):
            (root / d).mkdir(parents=True, exist_ok=True)
        self.project_dir = root / "project"
        (self.project_dir / "opencode.json").write_text(json.dumps({
            "$schema": "https://opencode.ai/config.json",
            "provider": {"cbchaos": {"npm": "@ai-sdk/openai-compatible", "name": "cbchaos",
                                     "options": {"baseURL": provider_url, "apiKey": "x"},
                                     "models": {"mock": {"name": "mock"}}}},
            "model": "cbchaos/mock", "small_model": "cbchaos/mock", "autoupdate": False, "share": "disabled"}))
        self.proc: ManagedProcess | None = None
        self.port = 0

    @property
    def auth(self) -> tuple[str, str]:
        return ("opencode", self.password)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-opencode-directory": str(self.project_dir)}

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _env(self) -> dict[str, str]:
        r = self.root
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": "UTC",
                "HOME": str(r / "home"), "XDG_CONFIG_HOME": str(r / "config"), "XDG_DATA_HOME": str(r / "data"),
                "XDG_CACHE_HOME": str(r / "cache"), "XDG_STATE_HOME": str(r / "state"), "TMPDIR": str(r / "tmp"),
                "OPENCODE_SERVER_USERNAME": "opencode", "OPENCODE_SERVER_PASSWORD": self.password,
                "OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1",
                "OPENCODE_DISABLE_LSP_DOWNLOAD": "1"}

    def _ready(self, _: ManagedProcess) -> bool:
        req = urllib.request.Request(self.base_url + "/global/health", headers={
            "Authorization": "Basic " + b64encode(f"opencode:{self.password}".encode()).decode()})
        with urllib.request.urlopen(req, timeout=1) as resp:
            return json.loads(resp.read()).get("healthy") is True

    def start(self) -> "OpencodeProc":
        self.generation += 1
        lease = allocate_port()
        self.port = lease.port
        lease.release()
        self.proc = ManagedProcess(
            f"opencode.g{self.generation}",
            [str(self.binary), "serve", "--hostname", "127.0.0.1", "--port", str(self.port), "--print-logs"],
            log_dir=self.root / "logs", env=self._env(), cwd=self.project_dir, ready=self._ready,
            startup_timeout=30.0)
        self.proc.start()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill() if False else os.killpg(self.proc.pid, 9)  # fault: SIGKILL, reaped by liveness

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.pause()

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.resume()

    def liveness(self) -> Liveness:
        if self.proc is None or self.proc._popen is None:
            return Liveness.UNKNOWN
        if self.proc._popen.poll() is not None:
            return Liveness.DEAD
        return pid_liveness(self.proc.pid)


def opencode_available() -> bool:
    return OPENCODE_BIN.exists() or shutil.which("opencode") is not None
