"""Embedded Redis default: fakeredis' TCP server as a child process (``python -m`` this module).

Running it out of process lets the same proxy and process faults (SIGKILL, SIGSTOP, restart)
apply to it as to a real redis-server. Lua needs ``lupa`` (extra ``fakeredis[lua]``).

Fidelity fixes over fakeredis' own TCP server (docs/redis-backends.md): ``CLIENT KILL`` closes the
killed client's TCP connection at once (fakeredis only marks the client and answers its next command
with an error reply); a reply larger than the socket's send buffer is sent whole (fakeredis cuts it
off and closes the connection); ``addr``/``laddr`` read ``ip:port`` (fakeredis shows a Python tuple,
so the ``ADDR``/``LADDR`` filters of ``CLIENT KILL`` never match); the listen backlog is Redis' 511,
not socketserver's 5.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import sys
import threading
from typing import Any

from fakeredis import TcpFakeServer
from fakeredis._clients._tcp_server import TCPFakeRequestHandler, Writer

_WRITABLE_POLL_MS = 500


class _CompleteWriter(Writer):
    """Writes every reply whole, and closes the connection right after the reply to a CLIENT KILL
    that killed its own client (Redis sends that reply, then closes).

    fakeredis puts the connection in non-blocking mode, so its ``sendall`` fails with
    ``BlockingIOError`` once a large reply fills the send buffer and the reply is cut off; Redis
    buffers it instead. Here the send waits until the socket is writable again.
    """

    def write(self, value: bytes) -> None:
        sock = self.request_handler.connection
        view = memoryview(value)
        while view:
            try:
                view = view[sock.send(view):]
            except BlockingIOError:
                writable = select.poll()
                writable.register(sock, select.POLLOUT)
                writable.poll(_WRITABLE_POLL_MS)

    def dump(self, value: Any) -> None:
        super().dump(value)
        handler = self.request_handler
        if isinstance(handler, RedisLikeHandler) and handler.close_after_reply:
            handler.close_connection()


class RedisLikeHandler(TCPFakeRequestHandler):
    """A connection whose fake client, once killed, is closed like a killed redis-server client, and
    whose replies are sent whole.

    Uses fakeredis internals (``FakeSocket.kill``, ``_client_info``, ``_blocked``); a fakeredis
    without them keeps its own behaviour (``tests/foundation/test_redis_fidelity.py`` then fails).
    """

    close_after_reply = False

    def setup(self) -> None:
        super().setup()
        self.writer = _CompleteWriter(self.client_address, self.wfile, self)
        self._thread = threading.current_thread()
        sock = self.current_client.get_socket()
        info = getattr(sock, "_client_info", None)
        if info is not None:
            info["addr"] = "%s:%d" % self.connection.getpeername()[:2]
            info["laddr"] = "%s:%d" % self.connection.getsockname()[:2]
        kill = getattr(sock, "kill", None)
        if kill is None:
            return

        def kill_and_close() -> None:  # called with fakeredis' server lock held
            kill()
            if getattr(sock, "_blocked", False):  # wake a blocked command (as CLIENT UNBLOCK does): its thread ends now
                sock._unblock_reason = b"timeout"
                sock._db.wake_all()
            if threading.current_thread() is self._thread:
                self.close_after_reply = True
            else:
                self.close_connection()

        sock.kill = kill_and_close

    def close_connection(self) -> None:
        """Both directions down: the client reads EOF now; this handler's next read or write ends it."""
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(TcpFakeServer):
    # redis-server's default tcp-backlog; socketserver's 5 drops the SYNs of a burst of connects,
    # each retried by the client's kernel a second later (a 1 s stall that hits a 1 s socket timeout)
    request_queue_size = 511


def make_server(bind: str, port: int) -> TcpFakeServer:
    server = _Server((bind, port), server_type="redis")
    server.RequestHandlerClass = RedisLikeHandler
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_cbchaos.servers.fakeredis_tcp")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--requirepass", default="")
    args = parser.parse_args(argv)
    if args.bind not in ("127.0.0.1", "localhost", "::1"):
        parser.error(f"--bind {args.bind!r}: only loopback addresses are allowed")
    server = make_server(args.bind, args.port)
    if args.requirepass:
        server.fake_server.config[b"requirepass"] = args.requirepass.encode()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"fakeredis TCP server listening on {args.bind}:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
