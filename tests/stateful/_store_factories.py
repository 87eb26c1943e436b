"""Picklable store factories for process workers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisFactory:
    host: str
    port: int
    password: str | None
    key_prefix: str = "cbchaos-cc"
    socket_timeout: float = 0.5

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
                           clock=clock)
        store.close = client.close  # type: ignore[attr-defined]
        return store
