"""Redis backends: the redis-server binary, fakeredis over TCP, docker, or an external URL.

``start_redis(backend, ...)`` returns a :class:`RedisServer` descriptor (``host``, ``port``,
``password``, ``pid``, ``dir``, ``backend``, ``version``, ``process``). ``auto`` prefers the
binary and falls back to fakeredis; a backend named explicitly that is unavailable raises
:class:`BackendUnavailable` with an install hint (a usage error, never a skip).
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pytest_cbchaos.servers.ports import DEFAULT_RANGE, PortLease, allocate_port
from pytest_cbchaos.servers.process import ManagedProcess, ServerStartError
from pytest_cbchaos.servers.redis_backend import (  # noqa: F401 (re-exported)
    INSTALL_HINT, BackendUnavailable, auto_backend, fakeredis_available)

REDIS_BACKENDS = ("auto", "binary", "fakeredis", "docker", "url")
PERSISTENCE = ("none", "aof-always")
MIN_REDIS_VERSION = (6, 0)


def no_retry() -> Retry:
    """redis-py retries timeouts and connection errors by default, which hides injected faults
    and turns a definite refusal into seconds of backoff; the kit's clients never retry."""
    return Retry(NoBackoff(), 0)


def no_async_retry() -> Any:
    """:func:`no_retry` for ``redis.asyncio`` clients."""
    from redis.asyncio.retry import Retry as AsyncRetry

    return AsyncRetry(NoBackoff(), 0)


@dataclass
class RedisServer:
    """A running Redis server, whatever its backend."""

    host: str
    port: int
    password: str | None
    backend: str
    version: str
    dir: Path | None = None
    process: ManagedProcess | None = None
    auth_enforced: bool = True
    lease: PortLease | None = field(default=None, repr=False)
    container: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def url(self) -> str:
        auth = f":{urllib.parse.quote(self.password)}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A direct client (bypasses every proxy)."""
        kwargs.setdefault("socket_timeout", 5.0)
        kwargs.setdefault("socket_connect_timeout", 5.0)
        kwargs.setdefault("retry", no_retry())
        return redis.Redis(host=self.host, port=self.port, password=self.password, **kwargs)

    def ping(self) -> bool:
        with self.client(socket_timeout=1.0, socket_connect_timeout=1.0) as c:
            return bool(c.ping())

    def restart(self, *, graceful: bool = False) -> None:
        """Kill and relaunch on the same port (data is gone: no persistence)."""
        if self.process is None:
            raise BackendUnavailable(f"the {self.backend} backend is not managed by the kit; cannot restart it")
        self.process.restart(graceful=graceful)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        if self.container is not None:
            from pytest_cbchaos.servers import docker_backend

            docker_backend.remove_container(self.container)
            self.container = None
        if self.lease is not None:
            self.lease.release()
            self.lease = None


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _shutdown_nosave(server: RedisServer) -> Any:
    """``SHUTDOWN NOSAVE`` over a raw socket: immediate, no client retry logic in the way."""

    def graceful(_: ManagedProcess) -> None:
        with socket.create_connection((server.host, server.port), timeout=0.5) as sock:
            if server.password:
                sock.sendall(_resp("AUTH", server.password))
                sock.recv(64)
            sock.sendall(_resp("SHUTDOWN", "NOSAVE"))
            try:
                sock.recv(64)
            except OSError:
                pass

    return graceful


def _ready(server: RedisServer) -> Any:
    def probe(_: ManagedProcess) -> bool:
        return server.ping()

    return probe


@functools.lru_cache(maxsize=8)
def redis_binary_version(executable: str) -> str:
    """``redis-server --version`` once per run; raises BackendUnavailable below the minimum."""
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendUnavailable(f"cannot run {executable!r} --version: {exc}; {INSTALL_HINT}") from exc
    for token in out.split():
        if token.startswith("v="):
            version = token[2:]
            parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
            if parts < MIN_REDIS_VERSION:
                raise BackendUnavailable(f"{executable} is Redis {version}; version >= 6.0 is required")
            return version
    raise BackendUnavailable(f"cannot parse the version printed by {executable!r}: {out!r}")


def resolve_backend(backend: str, executable: str | None) -> str:
    if backend not in REDIS_BACKENDS:
        raise BackendUnavailable(f"unknown Redis backend {backend!r}; expected one of {', '.join(REDIS_BACKENDS)}")
    if backend != "auto":
        return backend
    return auto_backend(executable)[0]


def start_redis(
    backend: str = "auto",
    *,
    workdir: Path,
    executable: str | None = None,
    url: str | None = None,
    port_range: tuple[int, int] = DEFAULT_RANGE,
    startup_timeout: float = 10.0,
    image: str = "redis:7",
    persistence: str = "none",
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> RedisServer:
    """Start (or attach to) a Redis server for one pytest worker.

    ``persistence="aof-always"`` (binary backend only) adds ``--appendonly yes --appendfsync always
    --maxmemory-policy noeviction``: ``restart()`` keeps ``--dir``, so a SIGKILL loses no
    acknowledged write (docs/stream-design.md#restart-and-lost-suffix). The default keeps no data across a restart.

    ``extra_args`` (config options appended to the command line, e.g. ``["--rename-command", "EVAL",
    ""]``) and ``env`` (extra environment, e.g. ``LD_PRELOAD``) need the binary backend; they are kept
    across ``restart()``."""
    if persistence not in PERSISTENCE:
        raise BackendUnavailable(f"unknown persistence {persistence!r}; expected one of {', '.join(PERSISTENCE)}")
    chosen = resolve_backend(backend, executable)
    if persistence != "none" and chosen != "binary":
        raise BackendUnavailable(f"persistence={persistence!r} needs the binary backend (got {chosen!r}); {INSTALL_HINT}")
    if (extra_args or env) and chosen != "binary":
        raise BackendUnavailable(f"extra_args/env need the binary backend (got {chosen!r}); {INSTALL_HINT}")
    if chosen == "binary":
        return _start_binary(executable or shutil.which("redis-server"), workdir, port_range, startup_timeout,
                             persistence, extra_args, env)
    if chosen == "fakeredis":
        return _start_fakeredis(workdir, port_range, startup_timeout)
    if chosen == "url":
        return _attach_url(url)
    from pytest_cbchaos.servers import docker_backend

    return docker_backend.start_redis_container(image=image, port_range=port_range,
                                                startup_timeout=startup_timeout)


def _start_binary(executable: str | None, workdir: Path, port_range: tuple[int, int],
                  startup_timeout: float, persistence: str = "none", extra_args: Sequence[str] = (),
                  env: Mapping[str, str] | None = None, *, lease: PortLease | None = None,
                  password: str | None = None) -> RedisServer:
    """``lease``/``password`` given by a topology whose proxies and peers must know them before the start."""
    if not executable or not Path(executable).exists() and not shutil.which(executable):
        raise BackendUnavailable(f"redis-server not found (looked for {executable or 'redis-server on PATH'}); {INSTALL_HINT}")
    version = redis_binary_version(executable)
    lease = lease or allocate_port(port_range)
    password = password or secrets.token_hex(16)
    data_dir = Path(workdir) / f"redis-{lease.port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = RedisServer("127.0.0.1", lease.port, password, "binary", version, data_dir, lease=lease)
    argv = [executable, "--port", str(lease.port), "--bind", "127.0.0.1", "--protected-mode", "yes",
            "--requirepass", password, "--save", "", "--appendonly", "no", "--dir", str(data_dir),
            "--dbfilename", "dump.rdb", "--pidfile", str(data_dir / "redis.pid"),
            "--daemonize", "no", "--timeout", "0", "--unixsocket", ""]
    if persistence == "aof-always":
        i = argv.index("--appendonly")
        argv[i + 1] = "yes"
        argv += ["--appendfsync", "always", "--maxmemory-policy", "noeviction"]
    argv += [str(a) for a in extra_args]
    # Logs go to stdout, captured by ManagedProcess into <dir>/redis.log.
    argv = [a for a in argv]
    server.process = ManagedProcess("redis", argv, log_dir=data_dir, ready=_ready(server),
                                    env=None if env is None else {**os.environ, **env},
                                    startup_timeout=startup_timeout, graceful_stop=_shutdown_nosave(server))
    try:
        server.process.start()
    except ServerStartError:
        lease.release()
        raise
    return server


def _start_fakeredis(workdir: Path, port_range: tuple[int, int], startup_timeout: float) -> RedisServer:
    if not fakeredis_available():
        raise BackendUnavailable(f"the fakeredis backend needs `pip install 'fakeredis[lua]'`; {INSTALL_HINT}")
    import fakeredis

    lease = allocate_port(port_range)
    password = secrets.token_hex(16)
    data_dir = Path(workdir) / f"fakeredis-{lease.port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = RedisServer("127.0.0.1", lease.port, password, "fakeredis", fakeredis.__version__, data_dir, lease=lease)
    argv = [sys.executable, "-m", "pytest_cbchaos.servers.fakeredis_tcp", "--port", str(lease.port),
            "--requirepass", password]
    server.process = ManagedProcess("fakeredis", argv, log_dir=data_dir, ready=_ready(server),
                                    startup_timeout=startup_timeout)
    try:
        server.process.start()
    except ServerStartError:
        lease.release()
        raise
    server.auth_enforced = _auth_enforced(server)
    return server


def _auth_enforced(server: RedisServer) -> bool:
    """True when a wrong password is refused (verified, not assumed)."""
    with redis.Redis(host=server.host, port=server.port, password="wrong-" + secrets.token_hex(4),
                     socket_timeout=2.0) as c:
        try:
            c.ping()
        except redis.AuthenticationError:
            return True
        except redis.ResponseError:
            return True
    return False


def _attach_url(url: str | None) -> RedisServer:
    if not url:
        raise BackendUnavailable("--cbchaos-redis-backend=url needs a URL: set --cbchaos-redis-url or REDIS_URL")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise BackendUnavailable(f"Redis URL {url!r}: expected redis://[:password@]host:port[/db]")
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    password = urllib.parse.unquote(parsed.password) if parsed.password else None
    server = RedisServer(host, port, password, "url", "unknown")
    deadline = time.monotonic() + 2.0
    while True:
        try:
            with server.client(socket_timeout=1.0, socket_connect_timeout=1.0) as c:
                info = c.info("server")
            server.version = str(info.get("redis_version", "unknown"))
            return server
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                raise BackendUnavailable(f"Redis at {host}:{port} (from {url!r}) is unreachable: {exc}") from exc
            time.sleep(0.05)  # retry interval while the external server answers
