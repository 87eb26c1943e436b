"""The scenario path starts its servers through the one environment, so the image options reach it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_cbchaos.env import Environment
from pytest_cbchaos.servers import docker_backend, ports
from pytest_cbchaos.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class _FakeContainers:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def list(self, **_: Any) -> list[Any]:
        return []

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.seen.append(kwargs.get("image") or args[0])
        raise RuntimeError("fake docker engine: no containers here")


class _FakeEngine:
    """Answers ping, records the image of every ``containers.run``, runs nothing."""

    def __init__(self, seen: list[str]) -> None:
        self.containers = _FakeContainers(seen)

    def ping(self) -> bool:
        return True


@pytest.fixture
def fake_docker(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(docker_backend, "docker_client", lambda factory=None: _FakeEngine(seen))
    return seen


@pytest.mark.parametrize("options, image", [
    (["--cbchaos-redis-backend=docker", "--cbchaos-redis-image=example.test/redis:scenario"],
     "example.test/redis:scenario"),
    (["--cbchaos-redis-backend=fakeredis", "--cbchaos-proxy-backend=docker",
      "--cbchaos-toxiproxy-image=example.test/toxiproxy:scenario"], "example.test/toxiproxy:scenario"),
])
def test_image_options_reach_the_scenario_path(pytester: pytest.Pytester, fake_docker: list[str],
                                               options: list[str], image: str) -> None:
    d = pytester.mkdir("scenarios")
    (d / "latency.yaml").write_text((ROOT / "scenarios" / "breaker-redis-latency.yaml").read_text())
    pytester.runpytest("scenarios", "-p", "no:cacheprovider", *options)
    assert fake_docker == [image]


def test_a_container_that_does_not_run_keeps_no_port(tmp_path: Path, fake_docker: list[str]) -> None:
    env = Environment.from_settings(Settings.defaults(redis_backend="docker", proxy_backend="docker"), tmp_path)
    held = set(ports._held)
    for start in (env.redis, env.toxiproxy):
        with pytest.raises(RuntimeError, match="fake docker engine"):
            start()
    env.stop()
    assert len(fake_docker) == 2 and ports._held == held
