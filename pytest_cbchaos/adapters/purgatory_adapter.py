"""purgatory 3.0.1: ``purgatory`` (async factory, ``AsyncRedisUnitOfWork``) and ``purgatory_sync``
(``SyncCircuitBreakerFactory`` + ``SyncRedisUnitOfWork``, whose repository builds an *asyncio* Redis
client in 3.0.1, so its calls crash: the probes report "target raised ...").

``purgatory[redis]`` pins ``redis<6``, which conflicts with the kit's redis-py 8: with redis-py >= 6
installed these adapters report themselves unavailable; ``nox -s purgatory`` runs them in their own
environment (docs/adapters.md#purgatory). Keys: ``cbr::<name>`` (JSON) and ``cbr::<name>::failure_count``.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from .base import BreakerAdapter, BreakerRejected, Unsupported, _Fail, normalise_state


class PurgatoryAdapter(BreakerAdapter):
    name = "purgatory"
    library = "purgatory"
    import_name = "purgatory"
    is_async = True
    known_weaknesses = ("W-HERD", "W-LOST-COUNT", "W-REDIS-DOWN", "W-NO-TTL", "W-LINEAR")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            major = int(version("redis").split(".")[0])
        except PackageNotFoundError:
            major = 0
        if major >= 6:
            return (f"purgatory[redis] pins redis>=5.2,<6 (needs redis<6) but redis-py {version('redis')} is installed; "
                    "run the purgatory adapter in a separate environment")
        return super().unavailable_reason()

    def _url(self) -> str:
        url = self.redis_url
        if self.password and "@" not in url:
            url = url.replace("redis://", f"redis://:{self.password}@", 1)
        return url

    def _build(self) -> None:
        from purgatory import AsyncCircuitBreakerFactory, AsyncRedisUnitOfWork  # 3.0.1's public names

        url = self._url()
        self.factory = AsyncCircuitBreakerFactory(default_threshold=self.config.failure_threshold,
                                                  default_ttl=self.config.cooldown_s,
                                                  uow=AsyncRedisUnitOfWork(url))
        self.run(self.factory.initialize())
        from purgatory.domain.model import OpenedState  # type: ignore[import-not-found]

        self._err = OpenedState

    async def acall(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        ran = False
        try:
            async with await self.factory.get_breaker(self.breaker_name):
                ran = True
                return await fn()
        except self._err as exc:
            if ran:
                raise
            raise BreakerRejected(self.name, exc) from exc

    def call(self, fn: Callable[[], Any]) -> Any:
        async def afn() -> Any:
            return fn()

        return self.run(self.acall(afn))

    def _outcome(self, ok: bool) -> None:
        async def afn() -> None:
            if not ok:
                raise _Fail("recorded failure")

        try:
            self.run(self.acall(afn))
        except (_Fail, BreakerRejected):
            pass

    def state(self) -> str:
        brk = self.run(self.factory.get_breaker(self.breaker_name))
        return normalise_state(brk.context.state)

    def counters(self) -> dict[str, int | None]:
        brk = self.run(self.factory.get_breaker(self.breaker_name))
        return {"failures": int(brk.context.failure_count or 0), "successes": None}

    def keys(self) -> list[str]:
        return [f"cbr::{self.breaker_name}", f"cbr::{self.breaker_name}::failure_count"]


class PurgatorySyncAdapter(PurgatoryAdapter):
    """purgatory's sync factory on its sync Redis unit of work (no event loop involved)."""

    name = "purgatory_sync"
    is_async = False

    def _build(self) -> None:
        from purgatory import SyncCircuitBreakerFactory, SyncRedisUnitOfWork
        from purgatory.domain.model import OpenedState  # type: ignore[import-not-found]

        self.factory = SyncCircuitBreakerFactory(default_threshold=self.config.failure_threshold,
                                                 default_ttl=self.config.open_seconds,
                                                 uow=SyncRedisUnitOfWork(self._url()))
        self.factory.initialize()
        self._err = OpenedState

    def call(self, fn: Callable[[], Any]) -> Any:
        ran = False
        try:
            with self.factory.get_breaker(self.breaker_name):
                ran = True
                return fn()
        except self._err as exc:
            if ran:
                raise
            raise BreakerRejected(self.name, exc) from exc

    async def acall(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        raise Unsupported(f"{self.name} is synchronous")

    def _outcome(self, ok: bool) -> None:
        BreakerAdapter._outcome(self, ok)

    def state(self) -> str:
        return normalise_state(self.factory.get_breaker(self.breaker_name).context.state)

    def counters(self) -> dict[str, int | None]:
        brk = self.factory.get_breaker(self.breaker_name)
        return {"failures": int(brk.context.failure_count or 0), "successes": None}
