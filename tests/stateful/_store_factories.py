"""Picklable store factories for process workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class NoWaitClock:
    """A worker's clock whose ``sleep`` returns at once (its readings are the worker clock's): the store's
    resend backoff waits for nothing when the proxy fault it meets stays on until the round ends."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clock, name)

    def sleep(self, seconds: float) -> None:
        pass


@dataclass(frozen=True)
class RedisFactory:
    host: str
    port: int
    password: str | None
    key_prefix: str = "cbchaos-cc"
    socket_timeout: float = 0.5
    resend_backoff: bool = True  # False: NoWaitClock (faults held for a whole round)

    def __call__(self, worker: int, clock):
        import redis

        from pytest_cbchaos.breaker.redis_store import RedisStore
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        client = redis.Redis(host=self.host, port=self.port, password=self.password,
                             socket_timeout=self.socket_timeout,
                             socket_connect_timeout=self.socket_timeout,
                             retry=Retry(NoBackoff(), 0))
        store = RedisStore(client, key_prefix=self.key_prefix, probe_lease_seconds=3600.0,
                           clock=clock if self.resend_backoff else NoWaitClock(clock))
        store.close = client.close  # type: ignore[attr-defined]
        return store
