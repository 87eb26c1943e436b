"""aiobreaker 1.2.0 on its (synchronous-client) ``CircuitRedisStorage``; keys ``<ns>:aiobreaker:*``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Awaitable, Callable

from .base import ARan, BreakerAdapter, BreakerRejected, Ran, Unsupported, normalise_state


class AiobreakerAdapter(BreakerAdapter):
    name = "aiobreaker"
    library = "aiobreaker"
    import_name = "aiobreaker"
    is_async = True
    known_weaknesses = ("W-HERD", "W-OPEN-TIME", "W-REDIS-DOWN", "W-LOOP-BLOCK", "W-NO-TTL", "W-CONFIG",
                        "W-LINEAR")

    def _build(self) -> None:
        import aiobreaker
        from aiobreaker.storage.redis import CircuitRedisStorage

        self.ns = None if self.library_defaults else f"cbchaos-ad:{self.breaker_name}"
        self.client = self.redis_client(decode_responses=False)
        storage = CircuitRedisStorage(aiobreaker.CircuitBreakerState.CLOSED, self.client, namespace=self.ns)
        self.cb = aiobreaker.CircuitBreaker(fail_max=self.config.failure_threshold,
                                            timeout_duration=timedelta(seconds=self.config.cooldown_s),
                                            state_storage=storage, name=self.breaker_name)
        self._err = aiobreaker.CircuitBreakerError

    def _reject(self, ran: Ran, exc: Exception) -> BreakerRejected:
        rt = getattr(exc, "time_remaining", None)
        return BreakerRejected(self.name, exc, rt.total_seconds() if rt is not None else None)

    def call(self, fn: Callable[[], Any]) -> Any:
        ran = Ran(fn)
        try:
            return self.cb.call(ran)
        except self._err as exc:
            if ran.ran:  # the failing call that tripped: the library replaces fn's error with its own
                raise ran.reraise(exc) from None
            raise self._reject(ran, exc) from exc

    async def acall(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        ran = ARan(fn)
        try:
            return await self.cb.call_async(ran)
        except self._err as exc:
            if ran.ran:  # the failing call that tripped: the library replaces fn's error with its own
                raise ran.reraise(exc) from None
            raise self._reject(ran, exc) from exc

    def state(self) -> str:
        return normalise_state(self.cb.current_state)

    def counters(self) -> dict[str, int | None]:
        return {"failures": int(self.cb.fail_counter), "successes": None}

    def keys(self) -> list[str]:
        pre = f"{self.ns}:" if self.ns else ""
        return [f"{pre}aiobreaker:{k}" for k in ("fail_counter", "state", "opened_at")]

    def force(self, state: str) -> None:
        fn = {"open": self.cb.open, "half_open": self.cb.half_open, "closed": self.cb.close}.get(state)
        if fn is None:
            raise Unsupported(f"aiobreaker cannot force {state!r}")
        try:
            fn()
        except self._err:
            pass

    def retry_after(self) -> float | None:
        try:
            t = self.cb.time_until_open
        except TypeError:  # no opened_at stored
            return None
        return None if t is None else t.total_seconds()
