"""A tiny threaded TCP fault proxy for the stream tests (reset, down/up, lose the next reply,
downstream blackhole). Used because the embedded Toxiproxy server is being written in parallel;
the faults are the same ones the spec names (reset_peer, disable, downstream blackhole)."""

from __future__ import annotations

import socket
import struct
import threading
import time

from pytest_cbchaos.servers.ports import allocate_port


def _rst(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in the other pump thread
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], name: str = "proxy") -> None:
        self.name = name
        self.upstream = upstream
        self.lease = allocate_port()
        self.listen_host, self.listen_port = "127.0.0.1", self.lease.port
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind((self.listen_host, self.listen_port))
        self._srv.listen(128)
        self._srv.settimeout(0.2)
        self.enabled = True
        self.blackhole_down = False
        self._lose_reply = 0
        self._lock = threading.Lock()
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        self._stop = False
        self.resets = 0
        self._t = threading.Thread(target=self._accept, daemon=True, name=f"faultproxy-{name}")
        self._t.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, _ = self._srv.accept()
            except (socket.timeout, OSError):
                continue
            if not self.enabled:
                _rst(c)
                continue
            try:
                u = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                _rst(c)
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            with self._lock:
                self._conns.append((c, u))
            threading.Thread(target=self._pump, args=(c, u, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if downstream:
                    if self._lose_reply:
                        with self._lock:
                            lose, self._lose_reply = self._lose_reply > 0, max(0, self._lose_reply - 1)
                        if lose:
                            self.resets += 1
                            break
                    if self.blackhole_down:
                        continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _rst(src)
            _rst(dst)
            with self._lock:
                self._conns = [p for p in self._conns if src not in p]

    # -- faults ------------------------------------------------------------------------------
    def reset_all(self) -> int:
        with self._lock:
            conns, self._conns = self._conns, []
        for c, u in conns:
            _rst(c)
            _rst(u)
        self.resets += len(conns)
        return len(conns)

    def down(self) -> None:
        self.enabled = False
        self.reset_all()

    def up(self) -> None:
        self.enabled = True

    def lose_next_reply(self, n: int = 1) -> None:
        """The next ``n`` upstream replies are dropped and their connection reset (applied, reply lost)."""
        with self._lock:
            self._lose_reply = n

    def heal(self) -> None:
        self.enabled, self.blackhole_down, self._lose_reply = True, False, 0

    def close(self) -> None:
        self._stop = True
        self._t.join(timeout=2)
        self._srv.close()
        self.reset_all()
        self.lease.release()
