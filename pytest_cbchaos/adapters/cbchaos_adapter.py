"""Our own breaker (``pytest_cbchaos.breaker``) behind the same contract, so probes compare like with like.

One hash per breaker: ``<prefix>:<breaker_name>``. Half-open admits exactly one probe (token-fenced),
so ``half_open_permits`` other than 1 is reported, not emulated.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from .base import BreakerAdapter, BreakerRejected, Unsupported, normalise_state

PREFIX = "cbchaos-ad"


def _config(cfg: Any) -> Any:
    from pytest_cbchaos.breaker import BreakerConfig

    return BreakerConfig(failure_threshold=cfg.failure_threshold, cooldown_s=cfg.cooldown_s,
                         on_store_error="raise", max_retries=1)


class CbchaosAdapter(BreakerAdapter):
    name = "cbchaos"
    library = "pytest-cbchaos"
    import_name = "pytest_cbchaos.breaker.breaker"
    known_weaknesses = ()

    def _build(self) -> None:
        from pytest_cbchaos.breaker import CircuitBreaker, CircuitBreakerOpenError, RedisStore

        self.client = self.redis_client(decode_responses=False)
        prefix = "cbchaos:cb" if self.library_defaults else PREFIX
        self.store = RedisStore(self.client, ttl=max(60, int(self.config.cooldown_s * 4) + 1), key_prefix=prefix)
        self.cb = CircuitBreaker(self.breaker_name, _config(self.config), store=self.store)
        self._err = CircuitBreakerOpenError

    def call(self, fn: Callable[[], Any]) -> Any:
        # acquire + resolve by hand: CircuitBreaker.call counts only retryable HTTP statuses
        # (massgen semantics), the contract counts every exception as a failure
        try:
            permit = self.cb.acquire()
        except self._err as exc:
            raise BreakerRejected(self.name, exc, exc.retry_after) from exc
        try:
            result = fn()
        except Exception as exc:
            permit.failure(type(exc).__name__)
            raise
        except BaseException:
            permit.release()
            raise
        permit.success()
        return result

    def _record(self) -> dict[str, Any]:
        return self.store.get_state(self.breaker_name)

    def state(self) -> str:
        return normalise_state(self._record().get("state"))

    def counters(self) -> dict[str, int | None]:
        return {"failures": int(self._record().get("failure_count") or 0), "successes": None}

    def keys(self) -> list[str]:
        return [self.store.key(self.breaker_name)]

    def force(self, state: str) -> None:
        if state == "open":
            self.cb.force_open("adapter", self.config.cooldown_s)
        elif state == "closed":
            self.cb.reset()
        else:
            raise Unsupported(f"cbchaos cannot force {state!r} (half-open is entered by a gate only)")

    def retry_after(self) -> float | None:
        import time

        rec = self._record()
        if normalise_state(rec.get("state")) != "open":
            return None
        return max(0.0, float(rec.get("open_until") or 0) - time.time())


class CbchaosAsyncAdapter(CbchaosAdapter):
    name = "cbchaos_async"

    def _build(self) -> None:
        from pytest_cbchaos.breaker import AsyncCircuitBreaker, AsyncRedisStore, CircuitBreakerOpenError

        self.client = self.redis_client(asyncio_client=True)
        self.store = AsyncRedisStore(self.client, ttl=max(60, int(self.config.cooldown_s * 4) + 1),
                                     key_prefix=PREFIX)
        self.cb = AsyncCircuitBreaker(self.breaker_name, _config(self.config), store=self.store)
        self._err = CircuitBreakerOpenError

    is_async = True

    async def acall(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        try:
            permit = await self.cb.acquire()
        except self._err as exc:
            raise BreakerRejected(self.name, exc, exc.retry_after) from exc
        try:
            result = await fn()
        except Exception as exc:
            await permit.failure(type(exc).__name__)
            raise
        except BaseException:
            await permit.release()
            raise
        await permit.success()
        return result

    def call(self, fn: Callable[[], Any]) -> Any:
        async def afn() -> Any:
            return fn()

        return self.run(self.acall(afn))

    def _outcome(self, ok: bool) -> None:
        from .base import _Fail

        try:
            self.run(self.acall(_aok if ok else _afail))
        except (_Fail, BreakerRejected):
            pass

    def _record(self) -> dict[str, Any]:
        return self.run(self.store.get_state(self.breaker_name))

    def force(self, state: str) -> None:
        if state == "open":
            self.run(self.cb.force_open("adapter", self.config.cooldown_s))
        elif state == "closed":
            self.run(self.cb.reset())
        else:
            raise Unsupported(f"cbchaos cannot force {state!r} (half-open is entered by a gate only)")


async def _aok() -> None:
    return None


async def _afail() -> None:
    from .base import _Fail

    raise _Fail("recorded failure")
