"""A small keep-alive HTTP/1.1 client for the proxy API, on the standard library.

The API client runs in every session that uses a fault proxy; httpx's import also loads its command
line's dependencies (rich, click, pygments) and costs about as much as the rest of a Redis session's
set-up (docs/fault-kit-design.md, "Start-up"). One connection per thread (``http.client`` connections
are not thread-safe); an idle connection the server closed is reopened once.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit


class TransportError(Exception):
    """No HTTP answer: the connection failed or broke."""


class TransportTimeout(TransportError):
    """No answer within the client's timeout."""


class Response:
    __slots__ = ("status_code", "reason_phrase", "content")

    def __init__(self, status_code: int, reason_phrase: str, content: bytes) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class HttpClient:
    def __init__(self, base_url: str, *, timeout: float, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"proxy API URL {base_url!r}: expected http://HOST:PORT or https://HOST:PORT")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._headers = headers
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[http.client.HTTPConnection] = []

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                import ssl

                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                                   context=ssl.create_default_context())
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._open.append(conn)
        return conn

    def request(self, method: str, path: str, content: bytes | None = None,
                headers: dict[str, str] | None = None) -> Response:
        all_headers = {**self._headers, **(headers or {})}
        for attempt in (0, 1):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                conn.request(method, self._prefix + path, body=content, headers=all_headers)
                response = conn.getresponse()
                data = response.read()
            except _STALE as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # the server closed this idle keep-alive connection: nothing was sent
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            except TimeoutError as exc:
                conn.close()
                raise TransportTimeout(str(exc)) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            if response.will_close:
                conn.close()
            return Response(response.status, response.reason, data)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            conn.close()
