"""Where a topology (Sentinel, Cluster) cannot run, its tests skip with the reason (docs/redis-topologies.md#the-topology) and
``cbchaos doctor`` says why; bad topology parameters are named with the expected values."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_cbchaos.cli import doctor_rows, main, topology_rows
from pytest_cbchaos.env import Environment
from pytest_cbchaos.plugin.factories import started_or_skip
from pytest_cbchaos.servers.cluster import check_cluster_params
from pytest_cbchaos.servers.redis import BackendUnavailable
from pytest_cbchaos.servers.sentinel import check_topology_params, topology_binary
from pytest_cbchaos.settings import Settings


def _old_redis(tmp_path: Path) -> Path:
    exe = tmp_path / "redis-server"
    exe.write_text("#!/bin/sh\necho 'Redis server v=6.2.14 sha=00000000:0 malloc=libc bits=64 build=0'\n")
    exe.chmod(0o755)
    return exe


def test_redis_older_than_7_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"needs redis-server >= 7.0 \(SENTINEL DEBUG\); .* is 6.2.14"):
        topology_binary(str(_old_redis(tmp_path)))
    with pytest.raises(BackendUnavailable, match="cannot run .*absent.* --version: .*No such file.*install redis-server"):
        topology_binary(str(tmp_path / "absent"))
    assert any(comp == "redis sentinel topology" for comp, _, _ in doctor_rows())


def test_doctor_lists_each_topology_and_whether_it_can_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = topology_rows(str(_old_redis(tmp_path)))
    assert [r[0] for r in rows] == ["redis sentinel topology", "redis cluster topology"]
    assert all(status == "cannot run here" and "is 6.2.14" in hint for _, status, hint in rows)
    assert rows[1][2].endswith("(cbchaos_redis_cluster tests skip meanwhile)")
    assert rows[0][2].startswith("the sentinel topology needs") and rows[1][2].startswith("the cluster topology needs")
    path, version = topology_binary()
    assert main(["doctor"]) == 0
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert f"redis sentinel topology can run: {path} --sentinel (version {version})" in lines
    assert f"redis cluster topology can run: {path} --cluster-enabled yes (version {version})" in lines


@pytest.mark.parametrize("args, key", [((0, 500, 2000), "replicas=0"), ((2, 10, 2000), "down_after_ms=10"),
                                       ((2, 500, 2.5), "failover_timeout_ms=2.5")])
def test_bad_topology_params_are_named(args: tuple, key: str) -> None:
    with pytest.raises(ValueError, match=f"sentinel topology: {key}, expected an int >= "):
        check_topology_params(*args)


@pytest.mark.parametrize("topology, backend, reason", [
    ("sentinel", "binary", r"needs redis-server >= 7.0 .* is 6.2.14"),
    ("sentinel", "fakeredis", "the sentinel topology needs the binary Redis backend .*'fakeredis'"),
    ("cluster", "binary", r"needs redis-server >= 7.0 .* is 6.2.14"),
    ("cluster", "fakeredis", "the cluster topology needs the binary Redis backend .*'fakeredis'")])
def test_the_fixture_skips_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topology: str,
                                           backend: str, reason: str) -> None:
    monkeypatch.delenv("CI", raising=False)
    env = Environment(Settings.defaults(redis_exec=str(_old_redis(tmp_path)), redis_backend=backend), tmp_path / "env")
    try:
        with pytest.raises(pytest.skip.Exception, match=reason):
            started_or_skip(getattr(env, topology))
    finally:
        env.stop()


def test_bad_cluster_params_are_named() -> None:
    with pytest.raises(ValueError, match=r"cluster topology: shards=0, expected an int >= 1"):
        check_cluster_params(0, 1000)
    with pytest.raises(ValueError, match=r"cluster topology: node_timeout_ms=True, expected an int >= 100"):
        check_cluster_params(3, True)
