"""Local fixtures for the proxy tests: an embedded server and a real redis-server."""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from typing import Iterator

import pytest
import redis

from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.servers.process import ManagedProcess
from pytest_cbchaos.servers.toxiproxy import ToxiproxyServer, start_toxiproxy


@pytest.fixture(scope="session")
def embedded_tp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToxiproxyServer]:
    server = start_toxiproxy("embedded", workdir=tmp_path_factory.mktemp("tp-embedded"), seed=7)
    yield server
    server.stop()


@dataclass
class RealRedis:
    port: int
    password: str
    process: ManagedProcess

    def client(self, port: int | None = None, **kw) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port or self.port, password=self.password,
                           socket_timeout=5.0, socket_connect_timeout=5.0, **kw)


@pytest.fixture(scope="session")
def real_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRedis]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    lease = allocate_port()
    password = secrets.token_hex(16)
    workdir = tmp_path_factory.mktemp("redis")

    def ready(_proc: ManagedProcess) -> bool:
        with redis.Redis(host="127.0.0.1", port=lease.port, password=password, socket_timeout=0.5) as c:
            return bool(c.ping())

    proc = ManagedProcess("redis", [exe, "--port", str(lease.port), "--bind", "127.0.0.1", "--requirepass", password,
                                    "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                          log_dir=workdir, ready=ready)
    proc.start()
    yield RealRedis(lease.port, password, proc)
    proc.stop()
    lease.release()


@pytest.fixture(scope="session")
def echo_address() -> Iterator[str]:
    from pytest_cbchaos.proxy.testkit import EchoServer

    server = EchoServer()
    yield server.address
    server.close()
