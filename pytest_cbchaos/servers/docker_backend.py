"""Optional Docker backend (extra ``docker``): Redis containers on host networking, labelled per run.

Only used when asked for. When the SDK is missing or no engine answers, :func:`engine_or_skip_reason`
returns a reason and the caller skips (fixtures) or raises a usage error (explicit CLI choice).
Containers are labelled ``cbchaos.run=<uid>`` and removed at teardown; stale ones are swept.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from pytest_cbchaos.servers.ports import DEFAULT_RANGE, allocate_port

RUN_LABEL = "cbchaos.run"
RUN_UID = uuid.uuid4().hex[:12]


class DockerUnavailable(RuntimeError):
    """No docker SDK, or no engine answering."""


def docker_client(factory: Any = None) -> Any:
    """A docker client whose engine answered ``ping``; raises DockerUnavailable with the reason."""
    if factory is None:
        try:
            import docker  # type: ignore[import-not-found]
        except ImportError as exc:
            raise DockerUnavailable("the docker SDK is not installed: pip install 'pytest-cbchaos[docker]'") from exc
        factory = docker.from_env
    try:
        client = factory()
        client.ping()
    except Exception as exc:  # the SDK raises several types for "no engine"
        raise DockerUnavailable(f"no Docker engine answers: {exc}") from exc
    return client


def engine_or_skip_reason(factory: Any = None) -> str | None:
    try:
        docker_client(factory)
    except DockerUnavailable as exc:
        return str(exc)
    return None


def redis_container_command(port: int, password: str) -> list[str]:
    """redis-server arguments for a container on host networking (loopback only, no persistence)."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
            "--requirepass", password, "--save", "", "--appendonly", "no", "--timeout", "0"]


def run_labels(extra: dict[str, str] | None = None) -> dict[str, str]:
    labels = {RUN_LABEL: RUN_UID}
    labels.update(extra or {})
    return labels


def sweep_stale(client: Any, live_run_uids: set[str]) -> list[str]:
    """Remove labelled containers of runs that are not live; returns their ids."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": RUN_LABEL}):
        if container.labels.get(RUN_LABEL) not in live_run_uids:
            container.remove(force=True)
            removed.append(container.id)
    return removed


def remove_container(container: Any) -> None:
    try:
        container.remove(force=True)
    except Exception:
        pass


def start_redis_container(*, image: str, port_range: tuple[int, int] = DEFAULT_RANGE,
                          startup_timeout: float = 30.0, factory: Any = None) -> Any:
    from pytest_cbchaos.servers.redis import BackendUnavailable, RedisServer

    try:
        client = docker_client(factory)
    except DockerUnavailable as exc:
        raise BackendUnavailable(str(exc)) from exc
    sweep_stale(client, {RUN_UID})
    lease = allocate_port(port_range)
    password = secrets.token_hex(16)
    try:
        container = client.containers.run(image, redis_container_command(lease.port, password), detach=True,
                                          network_mode="host", labels=run_labels(), auto_remove=False)
    except BaseException:
        lease.release()
        raise
    server = RedisServer("127.0.0.1", lease.port, password, "docker", image, lease=lease, container=container)
    deadline = time.monotonic() + startup_timeout
    while True:
        try:
            if server.ping():
                return server
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise BackendUnavailable(f"Redis container {image} not ready after {startup_timeout}s")
        time.sleep(0.05)  # readiness poll interval
