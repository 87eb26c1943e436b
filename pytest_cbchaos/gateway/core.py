"""Gateway core.

* :class:`ProviderSource` -- a `TurnSource` streaming an OpenAI-compatible ``/chat/completions``.
* :class:`BreakerGuardedSource` -- wraps any `TurnSource`: the call that reaches the model provider
  (``transport``) runs under the provider breaker, the opencode calls (``session``) under the
  opencode breaker; an open circuit becomes a recorded ``error`` terminal with ``cause: circuit_open``
  instead of a hang. A mid-stream provider failure is counted against the provider breaker.
* :class:`Gateway` -- ``submit(conversation_id, prompt, model_id=...)`` -> `TurnHandle`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any, AsyncIterator, Callable

import httpx

from pytest_cbchaos.stream.relay import TurnHandle, TurnRelay
from pytest_cbchaos.stream.sources import SourceEvent, SourceFailure, TurnSource


class ProviderHTTPError(Exception):
    """A non-200 answer from the provider; ``status_code`` lets the breaker classify it."""

    def __init__(self, status_code: int, body: str = "") -> None:
        super().__init__(f"provider answered HTTP {status_code}: {body[:200]}")
        self.status_code = status_code


class CircuitOpen(Exception):
    """The breaker refused the call; recorded as the turn's error terminal (``cause: circuit_open``)."""

    error_cause = "circuit_open"

    def __init__(self, backend: str, state: str, retry_after: float | None) -> None:
        super().__init__(f"circuit open for {backend!r} (state {state}, retry after "
                         f"{'unknown' if retry_after is None else f'{retry_after:.1f}s'})")
        self.backend, self.state, self.retry_after = backend, state, retry_after


class ProviderSource:
    """Streams one chat completion from an OpenAI-compatible provider."""

    def __init__(self, base_url: str, api_key: str, model: str, prompt: str, *, timeout_s: float = 10.0) -> None:
        self.base_url, self.api_key, self.model, self.prompt = base_url.rstrip("/"), api_key, model, prompt
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))
        self._resp: httpx.Response | None = None
        self._cm: Any = None
        self._aborted = False

    async def bootstrap(self, stage: str) -> None:
        if stage == "model_config":
            if not self.model:
                raise ValueError("model_id is empty")
        elif stage == "transport":
            body = {"model": self.model, "stream": True, "messages": [{"role": "user", "content": self.prompt}]}
            self._cm = self._client.stream("POST", f"{self.base_url}/chat/completions", json=body,
                                           headers={"Authorization": f"Bearer {self.api_key}"})
            resp = await self._cm.__aenter__()
            if resp.status_code != 200:
                text = (await resp.aread()).decode("utf-8", "replace")
                await self._cm.__aexit__(None, None, None)
                self._cm = None
                raise ProviderHTTPError(resp.status_code, text)
            self._resp = resp

    async def __aiter__(self) -> AsyncIterator[SourceEvent]:
        assert self._resp is not None, "bootstrap('transport') must run first"
        usage: dict[str, Any] = {}
        n = 0
        try:
            async for line in self._resp.aiter_lines():
                if self._aborted:
                    return
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    yield SourceEvent("complete", {"finish_reason": "stop", "usage": usage})
                    return
                try:
                    chunk = json.loads(data)
                except ValueError as exc:
                    raise SourceFailure(f"malformed provider chunk: {data[:80]}", "source.provider_error") from exc
                for choice in chunk.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        n += 1
                        yield SourceEvent("text_delta", {"part_id": "p1", "text": delta})
                if chunk.get("usage"):
                    usage = {"input_tokens": chunk["usage"].get("prompt_tokens", 0),
                             "output_tokens": chunk["usage"].get("completion_tokens", 0)}
        except httpx.HTTPError as exc:
            raise SourceFailure(f"provider stream broke: {exc!r}", "source.provider_error", retriable=True) from exc
        raise SourceFailure("provider stream ended without [DONE]", "source.incomplete")

    def abort(self) -> None:
        self._aborted = True

    async def aclose(self) -> None:
        if self._cm is not None:
            try:
                await self._cm.__aexit__(None, None, None)
            except Exception:
                pass
        await self._client.aclose()


class BreakerGuardedSource:
    """Runs the inner source's upstream calls under circuit breakers (async breakers, Redis state).

    The provider permit is taken at ``transport`` (the request that reaches the model) and held for
    the stream: ``complete`` resolves it as success, a provider failure as failure, anything else
    releases it.
    """

    def __init__(self, inner: TurnSource, *, provider_breaker: Any, opencode_breaker: Any = None) -> None:
        self.inner = inner
        self.provider_breaker = provider_breaker
        self.opencode_breaker = opencode_breaker
        self._permit: Any = None

    async def _acquire(self, breaker: Any) -> Any:
        from pytest_cbchaos.breaker import CircuitBreakerOpenError

        try:
            return await breaker.acquire()
        except CircuitBreakerOpenError as exc:
            raise CircuitOpen(exc.backend, exc.state, exc.retry_after) from exc

    resolve_timeout_s = 3.0

    @classmethod
    async def _resolve(cls, permit: Any, how: str, *args: Any) -> None:
        """Resolve a permit, bounded: a slow breaker store never holds a turn open."""
        r = getattr(permit, how)(*args)
        if inspect.isawaitable(r):
            task = asyncio.ensure_future(r)
            done, _ = await asyncio.wait({task}, timeout=cls.resolve_timeout_s)
            if task not in done:
                task.cancel()
            elif task.exception() is not None:
                pass  # the breaker's own store error; the turn's outcome is already decided

    async def bootstrap(self, stage: str) -> None:
        breaker = self.opencode_breaker if stage == "session" else self.provider_breaker if stage == "transport" else None
        if breaker is None:
            await self.inner.bootstrap(stage)
            return
        permit = await self._acquire(breaker)
        try:
            await self.inner.bootstrap(stage)
        except Exception as exc:
            await self._resolve(permit, "failure" if breaker._counted(exc) else "release",
                                *([type(exc).__name__] if breaker._counted(exc) else []))
            raise
        except BaseException:
            await self._resolve(permit, "release")
            raise
        if stage == "transport":
            self._permit = permit  # held for the stream
        else:
            await self._resolve(permit, "success")

    async def __aiter__(self) -> AsyncIterator[SourceEvent]:
        permit, self._permit = self._permit, None
        outcome = "release"
        try:
            async for ev in self.inner:
                if ev.kind == "complete" and permit is not None:
                    await self._resolve(permit, "success")  # before the terminal is written
                    permit = None
                yield ev
        except SourceFailure as exc:
            if exc.code == "source.provider_error":
                outcome = "failure"
            raise
        finally:
            if permit is not None:
                await self._resolve(permit, outcome, *(["provider_error"] if outcome == "failure" else []))

    def abort(self) -> None:
        self.inner.abort()

    async def aclose(self) -> None:
        if self._permit is not None:
            permit, self._permit = self._permit, None
            await self._resolve(permit, "release")
        await self.inner.aclose()


SourceFactory = Callable[[str, str, str, str], TurnSource]  # (conversation_id, message_id, model_id, prompt)


class Gateway:
    """Joins the relay (durable stream), the breakers and a source factory."""

    def __init__(self, relay: TurnRelay, source_factory: SourceFactory, *, provider_breaker: Any,
                 opencode_breaker: Any = None) -> None:
        self.relay = relay
        self.source_factory = source_factory
        self.provider_breaker = provider_breaker
        self.opencode_breaker = opencode_breaker

    async def submit(self, conversation_id: str, prompt: str, *, model_id: str, message_id: str | None = None,
                     previous_message_id: str | None = None) -> TurnHandle:
        inner = self.source_factory(conversation_id, message_id or "", model_id, prompt)
        source = BreakerGuardedSource(inner, provider_breaker=self.provider_breaker,
                                      opencode_breaker=self.opencode_breaker)
        return await self.relay.start(conversation_id, source, model_id=model_id, prompt=prompt,
                                      message_id=message_id, previous_message_id=previous_message_id)
