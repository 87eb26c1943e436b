"""Redis behaviour the kit's faults and checks rely on, the same on every local backend
(docs/redis-backends.md): CLIENT KILL closes the killed connections at once (a killed client reads
EOF, not an error reply); a large reply to a client that is slow to read arrives whole; a burst of
connects is queued by the kernel, not dropped."""

import os
import select
import shutil
import signal
import socket
import time

import pytest
import redis

from pytest_cbchaos.servers.redis import start_redis

BACKENDS = [pytest.param("binary", marks=pytest.mark.skipif(not shutil.which("redis-server"),
                                                            reason="redis-server not installed")),
            "fakeredis"]
EOF_WITHIN_S = 2.0


def _cmd(*parts: str) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part.encode()), part.encode()))
    return b"".join(out)


def _read_until_eof(sock: socket.socket) -> bytes:
    """Everything the server still sends; fails if the connection stays open past the bound."""
    sock.settimeout(EOF_WITHIN_S)
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            pytest.fail(f"connection still open {EOF_WITHIN_S} s after CLIENT KILL (received {data!r})")
        if not chunk:
            return data
        data += chunk


def _connect(server, *pipelined: bytes) -> tuple[socket.socket, bytes]:
    """A raw connection (AUTH first); returns it with the reply to the first pipelined command."""
    sock = socket.create_connection((server.host, server.port), timeout=EOF_WITHIN_S)
    sock.sendall(_cmd("AUTH", server.password) + b"".join(pipelined))
    assert sock.recv(5) == b"+OK\r\n"
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += sock.recv(1)
    return sock, reply


@pytest.fixture(params=BACKENDS)
def server(request, tmp_path):
    s = start_redis(request.param, workdir=tmp_path)
    yield s
    s.stop()


def test_killed_idle_and_blocked_clients_read_eof(server):
    idle, _ = _connect(server, _cmd("PING"))
    # CLIENT ID's reply comes first; the XREAD behind it blocks (or is about to): either way killed
    blocked, _ = _connect(server, _cmd("CLIENT", "ID"), _cmd("XREAD", "BLOCK", "10000", "STREAMS", "s", "$"))
    with idle, blocked, server.client() as admin:
        assert admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") == 2
        assert _read_until_eof(idle) == b""
        assert _read_until_eof(blocked) == b""
        assert admin.ping()


def test_client_killing_itself_gets_the_reply_then_eof(server):
    sock, reply = _connect(server, _cmd("CLIENT", "ID"))
    with sock:
        own_id = reply.strip().lstrip(b":").decode()
        sock.sendall(_cmd("CLIENT", "KILL", "ID", own_id, "SKIPME", "no"))
        assert _read_until_eof(sock) == b":1\r\n"


def test_kill_by_addr_matches_the_clients_ip_port(server):
    sock, _ = _connect(server, _cmd("PING"))
    with sock, server.client() as admin:
        ip, port = sock.getsockname()[:2]
        assert f"addr={ip}:{port} " in admin.execute_command("CLIENT", "LIST").decode()
        assert admin.execute_command("CLIENT", "KILL", "ADDR", f"{ip}:{port}", "SKIPME", "yes") == 1
        assert _read_until_eof(sock) == b""


def test_large_reply_to_a_slow_reader_arrives_whole(server):
    value = b"x" * (8 << 20)  # far more than the kernel's socket buffers
    with server.client() as admin:
        admin.set("big", value)
    conn = redis.Connection(host=server.host, port=server.port, password=server.password,
                            socket_timeout=EOF_WITHIN_S)
    try:
        conn.send_command("GET", "big")
        time.sleep(0.5)  # not reading yet: the server's send buffer fills up
        assert conn.read_response() == value
    finally:
        conn.disconnect()


def test_a_burst_of_connects_is_queued_not_dropped(server):
    """With the server stopped (it accepts nothing), the kernel completes every handshake up to the
    listen backlog; a connect beyond it is dropped and retried a second later (a 1 s stall)."""
    burst = 32
    socks = [socket.socket() for _ in range(burst)]
    os.kill(server.pid, signal.SIGSTOP)
    try:
        for s in socks:
            s.setblocking(False)
            s.connect_ex((server.host, server.port))
        pending, deadline = list(socks), time.monotonic() + 0.5
        while pending and time.monotonic() < deadline:
            _, done, _ = select.select([], pending, [], 0.05)
            pending = [s for s in pending if s not in done]
        assert not pending, f"{len(pending)} of {burst} connects not completed while the server was stopped"
    finally:
        os.kill(server.pid, signal.SIGCONT)
        for s in socks:
            s.close()
