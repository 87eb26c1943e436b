import shutil

import pytest
import redis

from pytest_cbchaos.servers import docker_backend
from pytest_cbchaos.servers.redis import BackendUnavailable, resolve_backend, start_redis

needs_binary = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server not installed")


@needs_binary
def test_binary_backend_is_private_and_authenticated(tmp_path):
    server = start_redis("binary", workdir=tmp_path)
    try:
        assert server.backend == "binary" and server.host == "127.0.0.1"
        assert len(server.password) == 32
        with redis.Redis(host=server.host, port=server.port) as anonymous:
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
        with server.client() as c:
            cfg = c.config_get("*")
            assert cfg["bind"] == "127.0.0.1" and cfg["save"] == "" and cfg["appendonly"] == "no"
            assert cfg["timeout"] == "0"
        server.restart()
        assert server.ping()
    finally:
        server.stop()
    assert not server.process.alive


def test_fakeredis_backend_runs_lua(tmp_path):
    server = start_redis("fakeredis", workdir=tmp_path)
    try:
        with server.client() as c:
            assert c.eval("return redis.call('INCR', KEYS[1])", 1, "k") == 1
        assert server.backend == "fakeredis" and server.process.alive
    finally:
        server.stop()


@needs_binary
def test_url_backend_attaches_and_reports_unreachable(tmp_path):
    server = start_redis("binary", workdir=tmp_path)
    try:
        attached = start_redis("url", workdir=tmp_path, url=server.url)
        assert attached.ping() and attached.version == server.version
    finally:
        server.stop()
    with pytest.raises(BackendUnavailable, match="unreachable"):
        start_redis("url", workdir=tmp_path, url=server.url)
    with pytest.raises(BackendUnavailable, match="expected redis://"):
        start_redis("url", workdir=tmp_path, url="http://nope")


def test_unknown_backend_names_the_choices():
    with pytest.raises(BackendUnavailable, match="expected one of auto, binary, fakeredis, docker, url"):
        resolve_backend("mongo", None)


class FakeContainer:
    def __init__(self, labels):
        self.labels, self.id, self.removed = labels, "c1", False

    def remove(self, force):
        self.removed = force


class FakeDocker:
    def __init__(self, ping_error=None, containers=()):
        self.ping_error = ping_error
        self.containers = self
        self._containers = list(containers)

    def ping(self):
        if self.ping_error:
            raise self.ping_error

    def list(self, all, filters):
        assert filters == {"label": docker_backend.RUN_LABEL}
        return self._containers


def test_docker_backend_reports_missing_engine_as_a_reason():
    reason = docker_backend.engine_or_skip_reason(lambda: FakeDocker(ConnectionError("no socket")))
    assert "no Docker engine answers" in reason
    assert docker_backend.engine_or_skip_reason(lambda: FakeDocker()) is None


def test_docker_sweep_removes_only_stale_runs():
    stale, live = FakeContainer({docker_backend.RUN_LABEL: "old"}), FakeContainer({docker_backend.RUN_LABEL: "now"})
    removed = docker_backend.sweep_stale(FakeDocker(containers=[stale, live]), {"now"})
    assert stale.removed and not live.removed and removed == ["c1"]


def test_docker_redis_command_is_loopback_only():
    argv = docker_backend.redis_container_command(21000, "pw")
    assert argv[argv.index("--bind") + 1] == "127.0.0.1" and "--requirepass" in argv
