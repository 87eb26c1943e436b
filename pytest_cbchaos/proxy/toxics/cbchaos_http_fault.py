"""EXTENSION (cbchaos only, not in Toxiproxy): ``cbchaos_http_fault``, per-request HTTP faults.

Put it on the **upstream** stream of a proxy carrying HTTP/1.1 (on a downstream link it is a
pass-through). Requests are framed by Content-Length / chunked encoding; a request matching
``match_method`` (empty = any) and ``match_path`` (regex, ``re.search``) is affected while the
proxy-wide budget ``count`` lasts (-1 = all; counting is per proxy across keep-alive connections,
so "the third request fails" is deterministic) and the per-request roll ``probability`` (seeded)
says so. Actions:

* ``status``: answer ``status`` with ``headers`` and ``body`` without forwarding the request;
* ``delay``: forward after ``delay_ms``;
* ``stall``: never forward (the connection stays open);
* ``reset``: RST the client connection;
* ``truncate``: forward, then cut the response after ``after_bytes`` bytes and close;
* ``malformed_sse``: forward, then inject a malformed SSE event after ``after_events`` events.
"""

from __future__ import annotations

import asyncio
import re
from http import HTTPStatus
from typing import Any

from pytest_cbchaos.proxy.toxics.base import Chunk, Toxic, register

ACTIONS = ("status", "delay", "stall", "truncate", "reset", "malformed_sse")
MALFORMED_EVENT = b'data: {"cbchaos": malformed\n\n'


def request_length(buf: bytes) -> int | None:
    """Length of the first complete HTTP/1.1 request in ``buf`` or None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").lower()
    start = end + 4
    if "transfer-encoding: chunked" in head:
        pos = start
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(buf[pos:line_end].split(b";")[0].strip() or b"0", 16)
            pos = line_end + 2 + size + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n", line_end + 2)
                return None if trailer_end < 0 else trailer_end + 2
            if pos > len(buf):
                return None
    match = re.search(r"content-length:\s*(\d+)", head)
    total = start + (int(match.group(1)) if match else 0)
    return total if len(buf) >= total else None


class ResponseTap:
    """Filter on the downstream link: truncation or SSE injection for one response."""

    def __init__(self, link: Any, action: str, after_bytes: int, after_events: int) -> None:
        self.link = link
        self.action = action
        self.remaining = after_bytes
        self.events_left = after_events
        self.tail = b""

    def __call__(self, data: bytes) -> bytes:
        if self.action == "truncate":
            if len(data) < self.remaining:
                self.remaining -= len(data)
                return data
            cut = data[:max(self.remaining, 0)]
            self.link.tap = None
            asyncio.get_running_loop().call_soon(self.link.conn.close)
            return cut
        # malformed_sse: inject after the N-th event boundary
        out = bytearray()
        for i in range(len(data)):
            out.append(data[i])
            self.tail = (self.tail + data[i:i + 1])[-2:]
            if self.tail == b"\n\n":
                self.events_left -= 1
                if self.events_left <= 0:
                    out += MALFORMED_EVENT + data[i + 1:]
                    self.link.tap = None
                    return bytes(out)
        return bytes(out)


@register
class HttpFaultToxic(Toxic):
    TYPE = "cbchaos_http_fault"
    ATTRS = {"match_method": "string", "match_path": "string", "action": "string", "status": "int64",
             "headers": "object", "body": "string", "delay_ms": "int64", "after_events": "int64",
             "after_bytes": "int64", "count": "int64", "probability": "float32"}
    EXTENSION = True

    def __init__(self, **attrs: Any) -> None:
        self.a = attrs
        self.path_re = re.compile(attrs.get("match_path") or "")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        base = super().defaults()
        base.update(action="status", status=503, count=-1, probability=1.0)
        return base

    @classmethod
    def validate(cls, attributes: dict[str, Any]) -> str | None:
        if attributes.get("action") not in ACTIONS:
            return f"action must be one of {', '.join(ACTIONS)}; got {attributes.get('action')!r}"
        if not 100 <= int(attributes.get("status", 0)) <= 599:
            return f"status must be 100-599, got {attributes.get('status')}"
        if not 0 <= float(attributes.get("probability", 1)) <= 1:
            return f"probability must be within [0, 1], got {attributes.get('probability')}"
        headers = attributes.get("headers", {})
        if not isinstance(headers, dict) or not all(
                isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in headers.values()):
            return "headers must be an object of header name to string or number"
        for key in ("delay_ms", "after_events", "after_bytes"):
            if attributes.get(key, 0) < 0:
                return f"{key} must be >= 0, got {attributes[key]}"
        try:
            re.compile(attributes.get("match_path") or "")
        except re.error as exc:
            return f"match_path is not a valid regex: {exc}"
        return None

    def _affects(self, stub: Any, request: bytes) -> bool:
        line = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        method, path = (line + ["", ""])[:2]
        if self.a.get("match_method") and method.upper() != self.a["match_method"].upper():
            return False
        if not self.path_re.search(path):
            return False
        counters = stub.link.conn.proxy.ext_state.setdefault(("http_fault", stub.spec.name), {"affected": 0})
        count = self.a.get("count", -1)
        if count >= 0 and counters["affected"] >= count:
            return False
        if float(self.a.get("probability", 1.0)) < 1.0 and stub.rng.random() >= float(self.a["probability"]):
            return False
        counters["affected"] += 1
        return True

    def _response(self) -> bytes:
        status = int(self.a.get("status", 503))
        body = (self.a.get("body") or "").encode()
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        headers = {"Content-Type": "text/plain; charset=utf-8", **{str(k): str(v) for k, v in self.a.get("headers", {}).items()},
                   "Content-Length": str(len(body))}
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        return head.encode("latin-1") + body

    async def _handle(self, stub: Any, request: bytes, ts: float) -> None:
        if not self._affects(stub, request):
            stub.emit(Chunk(request, ts))
            return
        action = self.a["action"]
        conn = stub.link.conn
        if action == "status":
            if conn.down_link is not None:
                conn.down_link.write(self._response())
        elif action == "delay":
            try:
                await asyncio.sleep(self.a.get("delay_ms", 0) / 1000.0)
            except asyncio.CancelledError:
                stub.emit(Chunk(request, ts))
                raise
            stub.emit(Chunk(request, ts))
        elif action == "stall":
            return
        elif action == "reset":
            from pytest_cbchaos.proxy.link import set_linger_zero
            if conn.client.transport is not None:
                set_linger_zero(conn.client.transport)
            conn.close()
        else:
            if conn.down_link is not None:
                conn.down_link.tap = ResponseTap(conn.down_link, action, self.a.get("after_bytes", 0),
                                                 self.a.get("after_events", 0))
            stub.emit(Chunk(request, ts))

    async def pipe(self, stub: Any) -> None:
        if stub.link.direction != "upstream":
            from pytest_cbchaos.proxy.toxics.base import passthrough
            await passthrough(stub)
            return
        buf = b""
        ts = 0.0
        try:
            while True:
                chunk = await stub.get()
                if chunk is None:
                    if buf:
                        stub.emit(Chunk(buf, ts))
                    stub.close()
                    return
                buf += chunk.data
                ts = chunk.ts
                while True:
                    try:
                        length = request_length(buf)
                    except ValueError:  # not HTTP: pass bytes through unchanged
                        length = len(buf)
                    if length is None or length == 0:
                        break
                    request, buf = buf[:length], buf[length:]
                    await self._handle(stub, request, ts)
        except asyncio.CancelledError:
            if buf:
                stub.unget(Chunk(buf, ts))
            raise
