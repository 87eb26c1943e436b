"""Control-plane client of the opencode API with request-error classification (docs/recovery-design.md#request-errors).

Every call is classified into :class:`OpencodeRequestError` (``retriable`` or not) and every
response is read and released. ``call`` retries retriable failures in place
(``control_attempts`` attempts, backoff 0.25 s doubling to 4 s, ±20 % jitter).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any, Awaitable, Callable

import aiohttp

from pytest_cbchaos.recovery.config import RecoveryConfig
from pytest_cbchaos.recovery.handle import ServerTarget

RETRIABLE_HTTP = frozenset({429, 500, 502, 503, 504})


class OpencodeRequestError(Exception):
    def __init__(self, operation: str, message: str, *, retriable: bool, http_status: int | None = None,
                 body_excerpt: str = "", elapsed_s: float = 0.0, retry_after: float | None = None,
                 kind: str = "http") -> None:
        self.operation, self.retriable, self.http_status = operation, retriable, http_status
        self.body_excerpt, self.elapsed_s, self.retry_after, self.kind = body_excerpt, elapsed_s, retry_after, kind
        super().__init__(f"{operation}: {message}")


def backoff_delays(first: float = 0.25, cap: float = 4.0, jitter: float = 0.2):
    delay = first
    while True:
        yield delay * random.uniform(1 - jitter, 1 + jitter)
        delay = min(delay * 2, cap)


class ControlClient:
    """REST calls against the control plane; one aiohttp session per runner."""

    def __init__(self, target: ServerTarget, config: RecoveryConfig, session: aiohttp.ClientSession) -> None:
        self.target, self.config, self.session = target, config, session

    async def request(self, operation: str, method: str, path: str, *, json_body: Any = None,
                      timeout: float | None = None, expect: str = "json") -> Any:
        """One request, no retries. ``expect`` ∈ json, none."""
        url = self.target.control() + path
        started = time.monotonic()
        to = aiohttp.ClientTimeout(total=timeout or self.config.request_timeout)
        try:
            async with self.session.request(method, url, json=json_body, timeout=to,
                                            headers=self.target.headers()) as resp:
                body = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except asyncio.TimeoutError as exc:
            raise OpencodeRequestError(operation, f"timed out after {time.monotonic() - started:.2f}s at {url}",
                                       retriable=True, elapsed_s=time.monotonic() - started,
                                       kind="timeout") from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError) as exc:
            refused = isinstance(exc, aiohttp.ClientConnectorError)
            raise OpencodeRequestError(operation, f"{type(exc).__name__}: {exc} at {url}", retriable=True,
                                       elapsed_s=time.monotonic() - started,
                                       kind="refused" if refused else "reset") from exc
        elapsed = time.monotonic() - started
        excerpt = body[:2048].decode(errors="replace")
        if status in (401, 403):
            raise OpencodeRequestError(operation, f"password rejected by server at {url} (HTTP {status})",
                                       retriable=False, http_status=status, body_excerpt=excerpt, elapsed_s=elapsed)
        if status >= 400:
            ra = None
            try:
                ra = float(retry_after) if retry_after else None
            except ValueError:
                ra = None
            raise OpencodeRequestError(operation, f"HTTP {status} from {url}: {excerpt[:200]}",
                                       retriable=status in RETRIABLE_HTTP, http_status=status,
                                       body_excerpt=excerpt, elapsed_s=elapsed, retry_after=ra)
        if expect == "none" or not body.strip():
            if expect == "json":
                raise OpencodeRequestError(operation, f"empty body from {url} (HTTP {status})", retriable=False,
                                           http_status=status, elapsed_s=elapsed)
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise OpencodeRequestError(operation, f"invalid JSON from {url}: {excerpt[:200]!r}", retriable=False,
                                       http_status=status, body_excerpt=excerpt, elapsed_s=elapsed) from exc

    async def call(self, operation: str, fn: Callable[[], Awaitable[Any]], *,
                   before_retry: Callable[[OpencodeRequestError], Awaitable[bool]] | None = None,
                   is_dead: Callable[[], bool] | None = None) -> Any:
        """Run ``fn`` with in-place retries of retriable failures.

        ``before_retry(err)`` returning True stops retrying and returns None (used by the
        non-idempotent prompt: the earlier send was in fact accepted). ``is_dead()`` true ends the
        retries at once (a refused request against a dead process is not worth retrying).
        """
        delays = backoff_delays()
        last: OpencodeRequestError | None = None
        for attempt in range(self.config.control_attempts):
            try:
                return await fn()
            except OpencodeRequestError as err:
                last = err
                if not err.retriable or attempt + 1 >= self.config.control_attempts:
                    raise
                if is_dead is not None and is_dead():
                    raise
                if before_retry is not None and await before_retry(err):
                    return None
                delay = next(delays)
                if err.retry_after is not None:
                    delay = max(delay, min(err.retry_after, 4.0))
                await asyncio.sleep(delay)  # retry backoff
        assert last is not None
        raise last

    # -- endpoints -------------------------------------------------------------------------
    async def create_session(self, title: str | None = None) -> str:
        info = await self.request("create_session", "POST", "/session",
                                  json_body={"title": title} if title else {})
        sid = info.get("id") if isinstance(info, dict) else None
        if not isinstance(sid, str) or not sid:
            raise OpencodeRequestError("create_session", f"response without session id: {str(info)[:200]}",
                                       retriable=False, http_status=200)
        return sid

    async def prompt_async(self, session_id: str, text: str, model: tuple[str, str] | None = None) -> None:
        body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
        if model is not None:
            body["providerID"], body["modelID"] = model
        await self.request("prompt_async", "POST", f"/session/{session_id}/prompt_async", json_body=body,
                           expect="none")

    async def status(self, timeout: float | None = None) -> dict[str, Any]:
        data = await self.request("status", "GET", "/session/status", timeout=timeout)
        return data if isinstance(data, dict) else {}

    async def messages(self, session_id: str, timeout: float | None = None) -> list[dict[str, Any]]:
        data = await self.request("messages", "GET", f"/session/{session_id}/message", timeout=timeout)
        return data if isinstance(data, list) else []

    async def abort(self, session_id: str) -> Any:
        return await self.request("abort", "POST", f"/session/{session_id}/abort", expect="none")

    async def delete_session(self, session_id: str) -> Any:
        return await self.request("delete_session", "DELETE", f"/session/{session_id}", expect="none")

    async def health(self, timeout: float | None = None) -> dict[str, Any]:
        return await self.request("health", "GET", "/global/health", timeout=timeout)

    async def permission_reply(self, request_id: str, reply: str) -> Any:
        return await self.request("permission_reply", "POST", f"/permission/{request_id}/reply",
                                  json_body={"reply": reply}, expect="none")
