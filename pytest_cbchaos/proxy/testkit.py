"""Test helpers for proxy tests: a threaded echo server, socket reads with deadlines, raw HTTP."""

from __future__ import annotations

import socket
import socketserver
import threading
from typing import Callable

import httpx

from pytest_cbchaos.waiting import wait_until


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                sock.sendall(data)
        except OSError:
            return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class EchoServer:
    """Threaded TCP echo server on an ephemeral loopback port."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _EchoHandler)
        self.port = self._server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def recv_until_closed(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, BaseException | None]:
    """Read until EOF or error; returns the data and the error (None for a clean EOF)."""
    sock.settimeout(timeout)
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError as exc:
            return buf, exc
        if not chunk:
            return buf, None
        buf += chunk


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    wait_until(predicate, timeout, what, first_interval=0.001)


def raw(url: str, method: str, path: str, body: bytes | str | None = None,
        headers: dict[str, str] | None = None) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.request(method, url + path, content=content, headers=headers or {}, timeout=10.0)
