"""Child processes of the stream harness (docs/stream-design.md#harness).

``python -m pytest_cbchaos.stream.child SPEC.json`` runs one role:

* ``relay`` -- a :class:`TurnRelay` whose Redis link goes through the ``redis-producer`` proxy,
  serving the public API (``POST .../turns`` takes a :class:`TurnScript` in ``script``) plus the
  harness routes under ``/_cbchaos/``: release a gated turn, wait for an outcome, the producer's
  emissions and append history (the oracles), and ``arm``: the store's ``before_call`` hook holds
  the first call matching a script name and/or event kinds until the parent releases it, so a
  fault can be armed exactly before a chosen call. SIGTERM shuts the relay down gracefully (every
  run ends ``cancelled{relay_shutdown}``). SIGKILL and SIGSTOP hit only this process.
* ``app`` -- the consumer side: the HTTP/SSE app over the ``redis-consumer`` link, and the
  reaper over a direct link, so consumers and orphan reaping outlive the relay.

The spec file (mode 0600, written by the parent) carries the Redis password and the bearer token;
neither is ever on a command line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import time
from typing import Any

from aiohttp import web

from .config import StreamConfig
from .http import make_app
from .reaper import Reaper
from .relay import TurnRelay
from .scripted import GatedScript, ScriptError, TurnScript
from .store import StreamStore

HARNESS = web.AppKey("cbchaos_harness", dict)


def _client(link: dict[str, Any], *, socket_timeout: float, retries: bool) -> Any:
    import redis.asyncio as aioredis

    from pytest_cbchaos.servers.redis import no_async_retry

    kw: dict[str, Any] = {}
    if not retries:
        kw["retry"] = no_async_retry()  # the relay's own identical resend is what is under test
    return aioredis.Redis(host=link["host"], port=int(link["port"]), password=link.get("password"),
                          socket_timeout=socket_timeout, socket_connect_timeout=1.0, **kw)


def _load(dotted: str | None, default: Any) -> Any:
    """``module:Name`` -> the class or factory (tests plug mutant stores, reapers, runs and
    liveness checks in here)."""
    if not dotted:
        return default
    import importlib

    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return {"b64": base64.b64encode(obj).decode()}
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    return repr(obj)


def _outcome(o: Any) -> dict[str, Any]:
    return {"status": o.status, "terminal_kind": o.terminal_kind, "terminal_seq": o.terminal_seq,
            "error": None if o.error is None else f"{type(o.error).__name__}: {o.error}",
            "appends": o.appends, "retries": o.retries, "unwritten_events": o.unwritten_events,
            "superseded_by": o.superseded_by, "stop_reason": o.stop_reason, "stop_detail": o.stop_detail}


class Arm:
    """One armed call: the first matching ``before_call`` waits here until released."""

    def __init__(self, script: str | None, kinds: list[str] | None, hold_s: float) -> None:
        self.script, self.kinds, self.hold_s = script, set(kinds or ()), hold_s
        self.hit: dict[str, Any] | None = None
        self.released = asyncio.Event()

    def matches(self, name: str, kinds: tuple[str, ...]) -> bool:
        return self.hit is None and (self.script is None or self.script == name) and \
            (not self.kinds or bool(self.kinds & set(kinds)))


class RecordingRelay(TurnRelay):
    """Keeps each started turn's handle and source, so the harness routes can release and await it."""

    def __init__(self, *a: Any, turns: dict[str, tuple[Any, GatedScript]], **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.turns = turns

    async def start(self, conversation_id: str, source: Any, **kw: Any) -> Any:
        handle = await super().start(conversation_id, source, **kw)
        self.turns[handle.message_id] = (handle, source)
        return handle


@web.middleware
async def _bad_script(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ScriptError as exc:
        return web.json_response({"code": "bad_script", "key": exc.key, "message": str(exc)}, status=400)


def _relay_routes(app: web.Application, relay: TurnRelay, store: StreamStore, h: dict[str, Any]) -> None:
    turns: dict[str, tuple[Any, GatedScript]] = h["turns"]
    arms: dict[str, Arm] = h["arms"]

    async def before_call(name: str, kinds: tuple[str, ...]) -> None:
        for aid, arm in arms.items():
            if arm.matches(name, kinds):
                arm.hit = {"script": name, "kinds": list(kinds), "at": time.time()}
                try:
                    await asyncio.wait_for(arm.released.wait(), arm.hold_s)
                except asyncio.TimeoutError:
                    pass  # never hold a call forever: the parent may be gone
                return

    store.before_call = before_call

    async def release(request: web.Request) -> web.Response:
        t = turns.get(request.match_info["m"])
        if t is None:
            return web.json_response({"code": "unknown_turn"}, status=404)
        t[1].gate.set()
        return web.json_response({"released": True})

    async def outcome(request: web.Request) -> web.Response:
        t = turns.get(request.match_info["m"])
        if t is None:
            return web.json_response({"code": "unknown_turn"}, status=404)
        handle = t[0]
        timeout = float(request.query.get("timeout", "0"))
        if handle.task is None:
            return web.json_response({"done": True, "outcome": {"status": "duplicate"}})
        if timeout > 0:
            await asyncio.wait({handle.task}, timeout=min(timeout, 120.0))
        if not handle.task.done():
            return web.json_response({"done": False})
        return web.json_response({"done": True, "outcome": _outcome(handle.task.result())})

    async def emissions(request: web.Request) -> web.Response:
        return web.json_response([[sid, step, kind, base64.b64encode(p).decode()]
                                  for sid, step, kind, p in relay.emissions])

    async def history(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(relay.history, default=_jsonable), content_type="application/json")

    async def arm(request: web.Request) -> web.Response:
        body = await request.json()
        a = Arm(body.get("script"), body.get("kinds"), float(body.get("hold_s", 30.0)))
        aid = f"a{len(arms) + 1}"
        arms[aid] = a
        return web.json_response({"id": aid})

    async def arm_state(request: web.Request) -> web.Response:
        a = arms.get(request.match_info["a"])
        if a is None:
            return web.json_response({"code": "unknown_arm"}, status=404)
        return web.json_response({"hit": a.hit, "released": a.released.is_set()})

    async def arm_release(request: web.Request) -> web.Response:
        a = arms.get(request.match_info["a"])
        if a is None:
            return web.json_response({"code": "unknown_arm"}, status=404)
        a.released.set()
        return web.json_response({"released": True})

    app.router.add_post("/_cbchaos/turns/{m}/release", release)
    app.router.add_get("/_cbchaos/turns/{m}", outcome)
    app.router.add_get("/_cbchaos/emissions", emissions)
    app.router.add_get("/_cbchaos/history", history)
    app.router.add_post("/_cbchaos/arm", arm)
    app.router.add_get("/_cbchaos/arm/{a}", arm_state)
    app.router.add_post("/_cbchaos/arm/{a}/release", arm_release)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"pid": os.getpid(), "role": request.app[HARNESS]["role"]})


async def _serve(spec: dict[str, Any]) -> None:
    cfg = StreamConfig.from_mapping(spec["config"], source=spec.get("spec_path", "child spec"))
    role, token, port = spec["role"], spec["token"], int(spec["port"])
    h: dict[str, Any] = {"role": role, "turns": {}, "arms": {}}
    clients: list[Any] = []
    reaper: Reaper | None = None
    relay: TurnRelay | None = None
    if role == "relay":
        pclient = _client(spec["redis"], socket_timeout=float(spec.get("socket_timeout", 1.0)), retries=False)
        clients.append(pclient)
        store = _load(spec.get("store_class"), StreamStore)(pclient, cfg)
        relay = RecordingRelay(store, cfg, history=[], turns=h["turns"])
        relay.run_class = _load(spec.get("run_class"), relay.run_class)

        def source_factory(conv: str, mid: str, body: dict[str, Any]) -> GatedScript:
            return TurnScript.from_json(body.get("script") or {}).source()

        app = make_app(store, token, relay=relay, source_factory=source_factory)
        app.middlewares.append(_bad_script)
        _relay_routes(app, relay, store, h)
    else:
        cclient = _client(spec["redis"], socket_timeout=float(spec.get("socket_timeout", 1.0)), retries=True)
        admin = _client(spec["admin"], socket_timeout=5.0, retries=True)
        clients += [cclient, admin]
        cstore = StreamStore(cclient, cfg)
        app_relay = TurnRelay(cstore, cfg)
        liveness = _load(spec.get("liveness"), None)  # a factory: relay -> async (conv) -> bool
        app = make_app(cstore, token, relay=app_relay, liveness=liveness(app_relay) if liveness else None)
        reaper = _load(spec.get("reaper_class"), Reaper)(StreamStore(admin, cfg))
    app[HARNESS] = h
    app.router.add_get("/_cbchaos/health", _health)
    # open SSE streams would hold a graceful shutdown for aiohttp's default 60 s
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    if reaper is not None:
        reaper.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"cbchaos stream {role} ready on 127.0.0.1:{port} pid {os.getpid()}", flush=True)
    await stop.wait()
    print(f"cbchaos stream {role}: SIGTERM, shutting down", flush=True)
    t0 = time.monotonic()
    if relay is not None:
        try:
            await asyncio.wait_for(relay.aclose(), cfg.shutdown_grace_s + cfg.terminal_deadline_s)
        except asyncio.TimeoutError:
            print(f"cbchaos stream relay: runs still open after {cfg.shutdown_grace_s + cfg.terminal_deadline_s}s "
                  "of shutdown; exiting (the reaper closes them)", flush=True)
    if reaper is not None:
        await reaper.stop()
    await runner.cleanup()
    for c in clients:
        await c.aclose()
    print(f"cbchaos stream {role}: shut down in {time.monotonic() - t0:.2f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pytest_cbchaos.stream.child SPEC.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as fh:
        spec = json.load(fh)
    spec["spec_path"] = args[0]
    asyncio.run(_serve(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
