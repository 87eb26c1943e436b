"""The aiohttp consumer endpoint (docs/stream-design.md#endpoints): SSE with resume, heartbeats, notices, one
consumer per client id; plus status, record, events (oracle), turns and cancel."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from pytest_cbchaos.stream.envelope import Envelope, canonical
from pytest_cbchaos.stream.reader import REDIS_ERRORS, Notice, ReadLoop, StreamConnectError
from pytest_cbchaos.stream.relay import ConversationBusy, TurnRelay
from pytest_cbchaos.stream.store import StoreUnavailable, StreamStore

SourceFactory = Callable[[str, str, dict[str, Any]], Any]
_END = object()
STATE = web.AppKey("cbchaos_stream_state", dict)


class SSEPolicy:
    """How the SSE handler frames notices and keeps the connection alive. The defaults are the
    documented ones (docs/stream-design.md#connect, docs/stream-design.md#heartbeats-and-outages);
    `testing/stream_mutants.py` substitutes broken ones (M9, M31, M32)."""

    keepalive_timer = True  # `: hb` from a timer independent of Redis calls and of progress
    cut_slow_clients = True  # a write blocked for slow_client_s ends the response

    def notice(self, notice: Notice, cursor: int) -> str:
        """A connection notice: event `cbchaos`, never an `id:` line."""
        return "event: cbchaos\ndata: " + canonical({"code": notice.code, **notice.detail}).decode() + "\n\n"


def _int_param(value: str | None, name: str) -> int:
    if value is None or value == "":
        return 0
    if not value.isdigit() or len(value) > 19:
        raise web.HTTPBadRequest(text=json.dumps({"code": "bad_request", "param": name, "value": value,
                                                  "expected": "a decimal integer >= 0 of at most 19 digits"}),
                                 content_type="application/json")
    return int(value)


def make_app(store: StreamStore, token: str, *, relay: TurnRelay | None = None,
             source_factory: SourceFactory | None = None, policy: SSEPolicy | None = None,
             loop_class: type[ReadLoop] = ReadLoop,
             liveness: Callable[[str], Awaitable[bool]] | None = None) -> web.Application:
    """``liveness(conv)`` answers the status route's ``producer_live``; the default reads the lease
    from Redis (INV-29: any process answers alike). Tests plug mutants in here."""
    cfg = store.config
    policy = policy or SSEPolicy()

    async def lease_is_held(conv: str) -> bool:
        return await store.lease_holder(conv) is not None

    liveness = liveness or lease_is_held
    state = {"consumers": 0, "bad_last_event_id": 0}

    @web.middleware
    async def auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        given = given[7:] if given.startswith("Bearer ") else request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.json_response({"code": "unauthorized"}, status=401)
        return await handler(request)

    app = web.Application(middlewares=[auth])
    app[STATE] = state

    async def stream(request: web.Request) -> web.StreamResponse:
        conv = request.match_info["c"]
        q = request.query
        after = _int_param(q.get("after_seq"), "after_seq")
        lei_raw = request.headers.get("Last-Event-ID")
        lei = 0
        if lei_raw is not None:
            if lei_raw.isdigit() and len(lei_raw) <= 19:
                lei = int(lei_raw)
            else:
                state["bad_last_event_id"] += 1
        if state["consumers"] >= cfg.max_consumers:
            return web.json_response({"code": "too_many_consumers"}, status=503, headers={"Retry-After": "1"})
        loop = loop_class(store, conv, after_seq=max(after, lei), message_id=q.get("message_id") or None,
                        epoch=q.get("epoch") or None, follow=q.get("follow") in ("1", "true"),
                        client_id=q.get("client_id") or None)
        # the slot is taken before the first await: concurrent connects cannot all pass the check
        state["consumers"] += 1
        try:
            info = await loop.connect()
        except BaseException as exc:
            state["consumers"] -= 1
            if not isinstance(exc, StreamConnectError):
                raise
            if exc.status == 204:
                return web.Response(status=204, headers={"X-Cbchaos-Terminal-Seq": str(exc.detail["terminal_seq"]),
                                                         "X-Cbchaos-Terminal-Kind": exc.detail["terminal_kind"]})
            headers = {"Retry-After": "1"} if exc.status == 503 else None
            return web.json_response(exc.body, status=exc.status, headers=headers)
        resp = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no", "X-Cbchaos-Epoch": info["epoch"], "X-Cbchaos-Cursor": str(info["cursor"])})
        queue: asyncio.Queue = asyncio.Queue(maxsize=8)

        async def pump() -> None:
            cancelled = False
            try:
                async for item in loop.items():
                    await queue.put(item)
            except asyncio.CancelledError:
                cancelled = True  # the handler is gone and reads no more: a put on a full queue would hang
                raise
            finally:
                if not cancelled:
                    await queue.put(_END)

        task = asyncio.get_running_loop().create_task(pump())
        sent_cursor = info["cursor"]

        async def write(data: str) -> None:
            # a client that does not drain for slow_client_s is cut; the producer never waits on it
            w = asyncio.get_running_loop().create_task(resp.write(data.encode("utf-8")))
            done, _ = await asyncio.wait({w}, timeout=cfg.slow_client_s if policy.cut_slow_clients else None)
            if w not in done:
                w.cancel()
                raise ConnectionResetError("slow client")
            w.result()

        try:
            await resp.prepare(request)
            await write(f"retry: 1000\n: ready epoch={info['epoch']} cursor={info['cursor']} target={info['target']}\n\n")
            getter: asyncio.Task | None = None
            while True:
                if getter is None:
                    getter = asyncio.get_running_loop().create_task(queue.get())
                done, _ = await asyncio.wait({getter}, timeout=cfg.heartbeat_s if policy.keepalive_timer else None)
                if getter not in done:
                    await write(f": hb {sent_cursor}\n\n")  # timer independent of Redis calls
                    continue
                item, getter = getter.result(), None
                if item is _END:
                    break
                if isinstance(item, Notice):
                    await write(policy.notice(item, sent_cursor))
                elif isinstance(item, Envelope):
                    await write(f"event: stream\nid: {item.seq}\ndata: {item.to_json()}\n\n")
                    sent_cursor = item.seq
        except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
            pass
        finally:
            # Never wait unboundedly on the pump: a blocking read can swallow its cancellation
            # (asyncio timeouts on 3.11), which leaked the consumer slot and its Redis connection.
            task.cancel()
            await loop.aclose()  # such a read fails now and the loop ends
            while not queue.empty():
                queue.get_nowait()  # a pump blocked on a full queue can finish
            await asyncio.wait({task}, timeout=cfg.block_ms / 1000 + 2)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the read we cut short may end with any error
            state["consumers"] -= 1
        return resp

    async def status(request: web.Request) -> web.Response:
        conv = request.match_info["c"]
        try:
            meta = await store.meta(conv)
            if meta is None:
                return web.json_response({"code": "unknown_conversation"}, status=404)
            cur = meta.get("current_message_id")
            rec = await store.record(conv, cur) if cur else None
            live = await liveness(conv)
        except REDIS_ERRORS:
            return web.json_response({"code": "store_unavailable"}, status=503, headers={"Retry-After": "1"})
        return web.json_response({"epoch": meta["epoch"], "last_seq": meta["last_seq"], "floor_seq": meta["floor_seq"],
                                  "current_message_id": cur, "current_status": rec and rec["status"],
                                  "producer_live": live})

    async def message(request: web.Request) -> web.Response:
        try:
            rec = await store.record(request.match_info["c"], request.match_info["m"])
        except REDIS_ERRORS:
            return web.json_response({"code": "store_unavailable"}, status=503, headers={"Retry-After": "1"})
        if rec is None:
            return web.json_response({"code": "unknown_message"}, status=404)
        return web.json_response(rec)

    async def events(request: web.Request) -> web.Response:
        after = _int_param(request.query.get("after_seq"), "after_seq")
        limit = min(_int_param(request.query.get("limit") or "5000", "limit"), 5000)
        try:
            envs = await store.xrange(request.match_info["c"], after, limit)
        except REDIS_ERRORS:
            return web.json_response({"code": "store_unavailable"}, status=503, headers={"Retry-After": "1"})
        return web.Response(text="[" + ",".join(e.to_json() for e in envs) + "]", content_type="application/json")

    async def turns(request: web.Request) -> web.Response:
        if relay is None or source_factory is None:
            return web.json_response({"code": "no_relay"}, status=501)
        conv = request.match_info["c"]
        try:
            body = await request.json()
            model_id = body["model_id"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"code": "bad_request", "expected": "{message_id?, model_id, prompt}"}, status=400)
        mid = body.get("message_id")
        try:
            source = source_factory(conv, mid or "", body)
            h = await relay.start(conv, source, model_id=model_id, prompt=body.get("prompt", ""), message_id=mid,
                                  previous_message_id=body.get("previous_message_id"))
        except ConversationBusy as exc:
            return web.json_response({"code": "busy", "message": str(exc)}, status=409)
        except (StoreUnavailable, *REDIS_ERRORS) as exc:
            return web.json_response({"code": "store_unavailable", "message": str(exc)}, status=503,
                                     headers={"Retry-After": "1"})
        return web.json_response({"message_id": h.message_id, "epoch": h.epoch, "first_seq": h.first_seq,
                                  "after_seq": h.after_seq}, status=202)

    async def cancel(request: web.Request) -> web.Response:
        conv, mid = request.match_info["c"], request.match_info["m"]
        try:
            if relay is not None:
                await relay.cancel(conv, mid)
            else:
                await store.request_cancel(conv, mid)
        except REDIS_ERRORS:
            return web.json_response({"code": "store_unavailable"}, status=503, headers={"Retry-After": "1"})
        return web.json_response({"message_id": mid}, status=202)

    app.router.add_get("/v1/conversations/{c}/stream", stream)
    app.router.add_get("/v1/conversations/{c}/status", status)
    app.router.add_get("/v1/conversations/{c}/messages/{m}", message)
    app.router.add_get("/v1/conversations/{c}/events", events)
    app.router.add_post("/v1/conversations/{c}/turns", turns)
    app.router.add_post("/v1/conversations/{c}/messages/{m}/cancel", cancel)
    return app
