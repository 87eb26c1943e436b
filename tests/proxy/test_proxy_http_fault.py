"""Extension toxic ``cbchaos_http_fault`` against a real HTTP/1.1 server through the embedded proxy."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pytest_cbchaos.proxy.client import BadRequest
from tests.waits import fastest_under

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/sse":
            body = b"".join(f"data: {i}\n\n".encode() for i in range(4))
            ctype = "text/event-stream"
        else:
            body = b"x" * 1000
            ctype = "text/plain"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if ctype == "text/event-stream":  # an event stream ends when the server closes
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def http_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(embedded_tp, http_upstream):
    client = embedded_tp.client()
    p = client.create_proxy("http", http_upstream)
    yield p
    p.delete()


def base(proxy) -> str:
    return f"http://127.0.0.1:{proxy.listen_port}"


def test_third_request_fails_deterministically_across_keepalive(proxy):
    # count=1 after two unaffected requests: use a path regex and a budget
    proxy.add_toxic("cbchaos_http_fault", stream="upstream", match_method="POST", match_path="^/v1/chat",
                    action="status", status=429, headers={"Retry-After": "2"}, body="slow down", count=1)
    with httpx.Client(base_url=base(proxy), timeout=5) as http:
        assert http.get("/v1/chat").status_code == 200  # method does not match
        r = http.post("/v1/chat", content=b"hello")
        assert r.status_code == 429 and r.headers["retry-after"] == "2" and r.text == "slow down"
        r = http.post("/v1/chat", content=b"hello")  # budget used up: forwarded
        assert r.status_code == 200 and r.content == b"hello"


def test_delay_truncate_and_malformed_sse(proxy):
    with httpx.Client(base_url=base(proxy), timeout=5) as http:
        with proxy.toxic("cbchaos_http_fault", stream="upstream", action="truncate", after_bytes=100, count=1):
            with pytest.raises(httpx.HTTPError):
                http.get("/plain")
        with proxy.toxic("cbchaos_http_fault", stream="upstream", action="malformed_sse", after_events=2,
                         match_path="/sse", count=1):
            text = httpx.get(base(proxy) + "/sse", timeout=5).text
        assert text == "data: 0\n\ndata: 1\n\n" + 'data: {"cbchaos": malformed\n\n' + "data: 2\n\ndata: 3\n\n"
    with httpx.Client(base_url=base(proxy), timeout=5) as http:
        with proxy.toxic("cbchaos_http_fault", stream="upstream", action="reset"):
            with pytest.raises(httpx.HTTPError):
                http.get("/plain")
        with proxy.toxic("cbchaos_http_fault", stream="upstream", action="stall"):
            with pytest.raises(httpx.ReadTimeout):
                httpx.get(base(proxy) + "/plain", timeout=0.2)


def test_bad_attributes(proxy):
    with pytest.raises(BadRequest, match="action must be one of"):
        proxy.add_toxic("cbchaos_http_fault", stream="upstream", action="explode")
    with pytest.raises(BadRequest, match="probability must be within"):
        proxy.add_toxic("cbchaos_http_fault", stream="upstream", probability=2)


def test_delay_action_and_capability(proxy, embedded_tp):
    assert "cbchaos_http_fault" in embedded_tp.capabilities
    with proxy.toxic("cbchaos_http_fault", stream="upstream", action="delay", delay_ms=150, match_path="^/slow"):
        with httpx.Client(base_url=base(proxy), timeout=5) as http:
            start = time.monotonic()
            assert http.get("/slow").status_code == 200
            assert time.monotonic() - start >= 0.150
            def fast() -> float:
                start = time.monotonic()
                assert http.get("/fast").status_code == 200
                return time.monotonic() - start
            assert fastest_under(fast, 0.150) < 0.150  # /fast is not delayed: every try would be, if it were
