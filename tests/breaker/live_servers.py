"""Extra redis-server instances for the live-server breaker tests (renamed scripting, replica, ACL,
BUSY, eviction, restart, server clock skew), and a client spy that counts commands on the wire."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pytest
import redis

from pytest_cbchaos.servers.redis import RedisServer, no_retry, start_redis
from pytest_cbchaos.settings import get_settings
from pytest_cbchaos.waiting import wait_until  # noqa: F401 - re-exported for the live tests


def redis_exec(config: pytest.Config) -> str:
    s = get_settings(config)
    exe = s.redis_exec or shutil.which("redis-server")
    if s.redis_backend not in ("auto", "binary") or not exe:
        pytest.skip("needs the redis-server binary (extra servers with custom config)")
    return exe


@contextmanager
def extra_redis(config: pytest.Config, workdir: Path, extra_args: Sequence[str] = (),
                env: Mapping[str, str] | None = None, startup_timeout: float | None = None) -> Iterator[RedisServer]:
    """A dedicated redis-server with extra config options; stopped on exit."""
    s = get_settings(config)
    server = start_redis("binary", workdir=workdir, executable=redis_exec(config), port_range=s.port_range,
                         startup_timeout=startup_timeout or s.startup_timeout, extra_args=extra_args, env=env)
    try:
        yield server
    finally:
        server.stop()


class CountingConnection(redis.Connection):
    """Counts every command this connection sends (the client spy of CB-23)."""

    sent: list[str] = []

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        type(self).sent.append(str(args[0]).upper())
        super().send_command(*args, **kwargs)


def spy_client(server: RedisServer, **kw: Any) -> tuple[redis.Redis, list[str]]:
    """A direct client whose commands are recorded in the returned list."""
    cls = type("Spy", (CountingConnection,), {"sent": []})
    pool = redis.ConnectionPool(connection_class=cls, host=server.host, port=server.port,
                                password=kw.pop("password", server.password),
                                socket_timeout=kw.pop("socket_timeout", 5.0), retry=no_retry(), **kw)
    return redis.Redis(connection_pool=pool), cls.sent


