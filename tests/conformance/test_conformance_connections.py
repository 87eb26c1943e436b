"""Connection-level scenarios modelled on Toxiproxy's white-box tests, on every backend."""

from __future__ import annotations

import socket
import time

import pytest

from pytest_cbchaos.proxy.client import Client
from pytest_cbchaos.proxy.testkit import connect, recv_exact, recv_until_closed
from tests.waits import fastest_under


@pytest.fixture
def client(tp):
    with Client(tp.url) as c:
        yield c


@pytest.fixture
def proxy(client, echo):
    return client.create_proxy("echo", echo.address)


def rtt(sock: socket.socket, payload: bytes = b"ping") -> float:
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exact(sock, len(payload)) == payload
    return time.monotonic() - start


def test_echo_through_proxy(proxy):
    with connect(proxy.listen_port) as s:
        data = bytes(range(256)) * 1000
        s.sendall(data)
        assert recv_exact(s, len(data)) == data


def test_two_latencies_add(proxy):
    with connect(proxy.listen_port) as s:
        rtt(s)
        proxy.add_toxic("latency", name="a", latency=60)
        proxy.add_toxic("latency", name="b", latency=60)
        assert rtt(s) >= 0.120
        proxy.remove_toxic("a")
        proxy.remove_toxic("b")
        assert fastest_under(lambda: rtt(s), 0.120) < 0.120


def test_latency_does_not_throttle(proxy):
    proxy.add_toxic("latency", latency=100)
    with connect(proxy.listen_port) as s:
        start = time.monotonic()
        for i in range(20):
            s.sendall(b"x" * 100)
        assert recv_exact(s, 2000) == b"x" * 2000
        elapsed = time.monotonic() - start
    assert 0.100 <= elapsed < 1.0  # 20 pipelined chunks cost one latency, not twenty


def test_upstream_latency_applies_to_live_connection(proxy):
    with connect(proxy.listen_port) as s:
        rtt(s)
        with proxy.toxic("latency", stream="upstream", latency=80):
            assert rtt(s) >= 0.080
        assert fastest_under(lambda: rtt(s), 0.080) < 0.080


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
def test_reset_peer_rst_within_window(proxy, stream):
    """Linger 0 goes on both sockets of the link (Toxiproxy's link.go), so either stream ends in RST."""
    proxy.add_toxic("reset_peer", stream=stream, timeout=100)
    with connect(proxy.listen_port) as s:
        start = time.monotonic()
        s.sendall(b"hello")
        _, error = recv_until_closed(s)
        elapsed = time.monotonic() - start
    assert isinstance(error, ConnectionResetError), error
    assert 0.100 <= elapsed <= 0.100 + 0.25  # [timeout, timeout + slack for a 2-core CI machine]


def test_timeout_idle_close(proxy):
    proxy.add_toxic("timeout", timeout=100)
    with connect(proxy.listen_port) as s:
        start = time.monotonic()
        s.sendall(b"dropped")
        data, error = recv_until_closed(s)
        elapsed = time.monotonic() - start
    assert data == b"" and error is None
    assert elapsed >= 0.100


def test_timeout_zero_blackholes_and_close_on_remove(proxy):
    with connect(proxy.listen_port) as s:
        rtt(s)
        proxy.add_toxic("timeout", timeout=0)
        s.sendall(b"lost")
        s.settimeout(0.2)
        with pytest.raises(socket.timeout):
            s.recv(10)
        proxy.remove_toxic("timeout_downstream")
        data, error = recv_until_closed(s)
        assert data == b"" and error is None  # both ends read EOF


def test_limit_data_truncates(proxy):
    proxy.add_toxic("limit_data", bytes=10)
    with connect(proxy.listen_port) as s:
        s.sendall(b"0123456789abcdef")
        data, _ = recv_until_closed(s)
    assert data == b"0123456789"


def test_slicer_reassembles(proxy):
    proxy.add_toxic("slicer", average_size=10, size_variation=3, delay=100)
    payload = bytes(range(256)) * 4
    with connect(proxy.listen_port) as s:
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload


def test_bandwidth_limits(proxy):
    proxy.add_toxic("bandwidth", rate=100)  # 100 KB/s
    payload = b"z" * 20_000
    with connect(proxy.listen_port) as s:
        start = time.monotonic()
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload
        assert time.monotonic() - start >= 0.15  # 20 KB at 100 KB/s = 0.2 s


def test_slow_close_delays_close(client, echo, tp):
    p = client.create_proxy("sc", echo.address)
    p.add_toxic("slow_close", stream="upstream", delay=150)
    with connect(p.listen_port) as s:
        s.sendall(b"abc")
        assert recv_exact(s, 3) == b"abc"
        start = time.monotonic()
        s.shutdown(socket.SHUT_WR)
        recv_until_closed(s)
        assert time.monotonic() - start >= 0.150


def test_disable_refuses_and_closes(proxy):
    with connect(proxy.listen_port) as s:
        rtt(s)
        proxy.disable()
        data, _ = recv_until_closed(s)
        assert data == b""
    with pytest.raises(ConnectionRefusedError):
        connect(proxy.listen_port, timeout=1.0)
    proxy.enable()
    with connect(proxy.listen_port) as s:
        rtt(s)


def test_dead_upstream_gives_eof(client, free_port):
    p = client.create_proxy("dead", f"127.0.0.1:{free_port}")
    with connect(p.listen_port) as s:
        data, error = recv_until_closed(s)
    assert data == b""
    assert error is None or isinstance(error, ConnectionResetError)


def test_delete_closes_live_connections(proxy):
    with connect(proxy.listen_port) as s:
        rtt(s)
        proxy.delete()
        data, _ = recv_until_closed(s)
        assert data == b""


def test_toxicity_zero_never_applies(proxy):
    """Every round trip must miss the toxic (so not a retried minimum): a latency of 5 s leaves a fault-free
    round trip a generous bound it returns early from, and costs only a run where the toxic wrongly applies."""
    proxy.add_toxic("latency", latency=5000, toxicity=0)
    with connect(proxy.listen_port) as s:
        assert rtt(s) < 5.0


def test_reset_peer_added_to_open_connection_closes_with_fin(proxy):
    with connect(proxy.listen_port) as s:
        rtt(s)
        proxy.add_toxic("reset_peer", stream="upstream", timeout=0)
        s.sendall(b"bye")
        data, error = recv_until_closed(s)
    assert data == b"" and error is None  # linger 0 is set only at link start


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
def test_reset_peer_timeout_zero_resets_client(proxy, stream):
    proxy.add_toxic("reset_peer", stream=stream, timeout=0)
    with connect(proxy.listen_port) as s:
        s.sendall(b"hello")
        data, error = recv_until_closed(s)
    assert data == b""
    assert isinstance(error, ConnectionResetError), f"client saw {error!r} (None = FIN/EOF), expected ECONNRESET"


def test_out_of_range_toxicity_is_a_probability_clamped_by_the_roll(proxy):
    """Toxiproxy 2.12 stores 2.0 and -0.5 as sent: the roll in [0, 1) always/never applies them."""
    proxy.add_toxic("latency", name="always", latency=150, toxicity=2.0)
    proxy.add_toxic("latency", name="never", latency=2000, toxicity=-0.5)
    with connect(proxy.listen_port) as s:
        assert 0.150 <= rtt(s) < 2.0


class _RecordingServer:
    """One-connection TCP server that records how its peer (the proxy) ended the connection."""

    def __init__(self) -> None:
        import threading
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.outcome: list[BaseException | None] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            _, error = recv_until_closed(conn)
            self.outcome.append(error)

    def close(self) -> None:
        self.thread.join(5)
        self.sock.close()


def test_upstream_reset_peer_resets_the_upstream_server(client):
    """The upstream link's destination (the server side) also has linger 0: the server sees RST."""
    server = _RecordingServer()
    try:
        p = client.create_proxy("rst_up", server.address)
        p.add_toxic("reset_peer", stream="upstream", timeout=0)
        with connect(p.listen_port) as s:
            s.sendall(b"hello")
            recv_until_closed(s)
        server.close()
    finally:
        server.sock.close()
    assert len(server.outcome) == 1
    assert isinstance(server.outcome[0], ConnectionResetError), \
        f"server saw {server.outcome[0]!r} (None = FIN/EOF), expected ECONNRESET"
