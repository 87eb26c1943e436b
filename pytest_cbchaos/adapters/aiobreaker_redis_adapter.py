"""aiobreaker-redis 0.1.0 (unrelated to aiobreaker) on ``redis.asyncio``; keys ``<prefix>:<name>:{failures,state}``."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from .base import ARan, BreakerAdapter, BreakerRejected, normalise_state


class AiobreakerRedisAdapter(BreakerAdapter):
    name = "aiobreaker_redis"
    library = "aiobreaker-redis"
    import_name = "aiobreaker_redis"
    is_async = True
    known_weaknesses = ("W-HERD", "W-OPEN-TIME", "W-LOST-COUNT", "W-DIVERGENCE", "W-REDIS-DOWN", "W-LINEAR")

    def _build(self) -> None:
        import aiobreaker_redis

        self.prefix = "aiobreaker" if self.library_defaults else "cbchaos-ad"
        self.client = self.redis_client(asyncio_client=True)
        # the client binds to the loop it first runs on: always this adapter's private loop
        self.cb = aiobreaker_redis.CircuitBreaker(self.breaker_name, failure_threshold=self.config.failure_threshold,
                                                  recovery_timeout=float(self.config.cooldown_s),
                                                  redis_client=self.client, redis_prefix=self.prefix)
        self._err = aiobreaker_redis.CircuitOpenError

    async def acall(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        ran = ARan(fn)
        try:
            return await self.cb.call(ran)
        except self._err as exc:
            if ran.ran:
                raise
            raise BreakerRejected(self.name, exc, exc.retry_after) from exc

    def call(self, fn: Callable[[], Any]) -> Any:
        async def afn() -> Any:
            return fn()

        return self.run(self.acall(afn))

    def record_success(self) -> None:
        self.run(self.cb.record_success())

    def record_failure(self) -> None:
        self.run(self.cb.record_failure())

    def state(self) -> str:
        return normalise_state(self.run(self.cb.get_state()))

    def counters(self) -> dict[str, int | None]:
        raw = self.run(self.client.get(f"{self.prefix}:{self.breaker_name}:failures"))
        return {"failures": int(raw) if raw is not None else 0, "local_failures": self.cb._failure_count,
                "successes": None}

    def keys(self) -> list[str]:
        return [f"{self.prefix}:{self.breaker_name}:{k}" for k in ("failures", "state")]

    def retry_after(self) -> float | None:
        import time

        if self.state() != "open":
            return None
        return max(0.0, self.cb.recovery_timeout - (time.time() - self.cb._last_failure_time))
