"""The proxy API's stdlib HTTP client (``proxy/http.py``): keep-alive, a closed idle connection, timeouts."""

from __future__ import annotations

import socket
import threading

import pytest

from pytest_cbchaos.proxy.client import Client, ServerError



def _server(script):
    """A listener whose one accept thread runs ``script(listener)``: the test decides every byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=script, args=(listener,), daemon=True)
    thread.start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def _answer_once(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += conn.recv(4096)
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n'
                 b'{"version": "2.12.0"}')


def test_an_idle_connection_the_server_closed_is_reopened_once():
    accepted = []

    def script(listener):
        for _ in range(2):
            conn, _ = listener.accept()
            accepted.append(conn)
            _answer_once(conn)
            if len(accepted) == 1:
                conn.close()  # keep-alive promised, then closed while idle

    listener, url = _server(script)
    with Client(url, timeout=5.0) as client:
        assert client.version() == "2.12.0"
        assert client.version() == "2.12.0"  # the first connection is dead: a second one answers
    assert len(accepted) == 2
    listener.close()


def test_no_answer_is_a_timeout_error_naming_the_call():
    held = []
    listener, url = _server(lambda listener: held.append(listener.accept()))
    with Client(url, timeout=0.2) as client, pytest.raises(ServerError, match=r"GET .*/version: no answer within 0.2s"):
        client.version()
    listener.close()


def test_a_refused_connection_is_a_server_error():
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    with Client(url, timeout=1.0) as client, pytest.raises(ServerError, match="ConnectionRefusedError"):
        client.proxies()
