"""The one matrix of breaker-store paths (docs/breaker-design.md#store-paths): every conformance
check, the server-time checks, the cell walk and the store machine run on each of them.

A path is a ``StoreTarget`` plus how to read the server's clock (``None``: the store has no server,
its clock is the worker's). Async stores are driven through :class:`SyncFacade` so the same
synchronous checks run on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from pytest_cbchaos.breaker.conformance import StoreTarget, memory_target, redis_target

#: name -> (backend, scripting): the in-memory store, Lua and the WATCH fallback, sync and async
STORE_PATHS = ("memory", "fakeredis-lua", "fakeredis-nolua", "redis-proxy", "redis-proxy-fallback",
               "redis-proxy-fallback-async")
REAL_REDIS = tuple(p for p in STORE_PATHS if p.startswith("redis-"))


class SyncFacade:
    """Runs an async store's coroutines on a private event loop thread; other attributes pass through."""

    def __init__(self, inner: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.inner, self._loop = inner, loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **k: Any) -> Any:
            r = attr(*a, **k)  # the async store's ops return coroutines from plain methods
            if inspect.isawaitable(r):
                return asyncio.run_coroutine_threadsafe(_await(r), self._loop).result(timeout=60)
            return r
        return call


async def _await(r: Any) -> Any:
    return await r


class _Loop:
    """An event loop in a daemon thread, for :class:`SyncFacade`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clients: list[Any] = []  # async clients made on this loop, closed with it
        self.thread = threading.Thread(target=self.loop.run_forever, name="cbchaos-store-path", daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class StorePath:
    name: str
    target: StoreTarget
    server_now: Callable[[], float] | None  # the server's wall clock; None for a server-less store


def _server_now(client: Any) -> Callable[[], float]:
    def now() -> float:
        s, us = client.time()
        return s + us / 1e6
    return now


def async_redis_target(client: Any, loop: _Loop, name: str, **defaults: Any) -> StoreTarget:
    """``AsyncRedisStore`` on an async twin of ``client`` (same server), behind :class:`SyncFacade`."""
    import redis.asyncio as aredis

    from pytest_cbchaos.breaker.redis_store import AsyncRedisStore

    sync = redis_target(client, name, **defaults)
    kw = client.connection_pool.connection_kwargs
    aclient = loop.run(_make_async(aredis, kw))
    loop.clients.append(aclient)

    def make(**k: Any) -> Any:
        k.setdefault("key_prefix", defaults.get("key_prefix", "cbconf"))
        opts = {"time_source": "client", "allow_unbounded_io": True, **defaults, **k}
        return SyncFacade(AsyncRedisStore(aclient, **opts), loop.loop)
    return StoreTarget(name, make, raw_set=sync.raw_set, ttl_of=sync.ttl_of, keys=sync.keys)


async def _make_async(aredis: Any, kw: dict) -> Any:
    return aredis.Redis(host=kw.get("host", "localhost"), port=kw.get("port", 6379), db=kw.get("db", 0),
                        password=kw.get("password"), socket_timeout=kw.get("socket_timeout") or 5.0,
                        socket_connect_timeout=kw.get("socket_connect_timeout") or 5.0)


@contextlib.contextmanager
def open_store_path(name: str, redis_client: Callable[[], Any] | None = None) -> Iterator[StorePath]:
    """The path ``name``; ``redis_client()`` gives a client of the real server (only called for
    ``redis-*`` paths, so the other paths need no server)."""
    if name == "memory":
        yield StorePath(name, memory_target(), None)
        return
    if name.startswith("fakeredis"):
        import fakeredis

        c = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        try:
            extra = {"scripting": "disabled"} if name.endswith("nolua") else {}
            yield StorePath(name, redis_target(c, name, **extra), _server_now(c))
        finally:
            c.close()
        return
    if name not in STORE_PATHS or redis_client is None:
        raise ValueError(f"store path {name!r}: expected one of {STORE_PATHS} (redis-* need a client)")
    c = redis_client()
    prefix = f"t{uuid.uuid4().hex[:6]}"
    extra = {"scripting": "disabled"} if "fallback" in name else {}
    if not name.endswith("async"):
        yield StorePath(name, redis_target(c, name, key_prefix=prefix, allow_unbounded_io=False, **extra),
                        _server_now(c))
        return
    loop = _Loop()
    try:
        yield StorePath(name, async_redis_target(c, loop, name, key_prefix=prefix, allow_unbounded_io=False,
                                                 **extra), _server_now(c))
    finally:
        with contextlib.suppress(Exception):
            loop.run(_close_clients(loop))
        loop.close()


async def _close_clients(loop: _Loop) -> None:
    for c in loop.clients:
        await c.aclose()


def store_path_fixture() -> Any:
    """A ``store_path`` fixture over :data:`STORE_PATHS` (real-Redis paths use ``cbchaos_redis``);
    bind it in a conftest: ``store_path = store_path_fixture()``."""
    import pytest

    @pytest.fixture(params=STORE_PATHS)
    def store_path(request: Any) -> Iterator[StorePath]:
        with open_store_path(request.param, lambda: request.getfixturevalue("cbchaos_redis")) as path:
            yield path
    return store_path
