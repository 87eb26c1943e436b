"""Toxiproxy backends: ``embedded`` (default), ``binary``, ``url``, ``docker``.

All of them yield the same :class:`ToxiproxyServer` handle. A backend named explicitly that is
unavailable raises :class:`BackendUnavailable` (a usage error, never a skip).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pytest_cbchaos.proxy import VERSION
from pytest_cbchaos.servers.ports import DEFAULT_RANGE, PortLease, allocate_port

BACKENDS = ("embedded", "binary", "url", "docker")
DEFAULT_IMAGE = "ghcr.io/shopify/toxiproxy:2.12.0"
BINARY_HINT = ("toxiproxy-server is not on PATH: no Debian/PyPI/npm package ships it; download a release "
               "binary from https://github.com/Shopify/toxiproxy/releases (v2.12.0) and pass "
               "--cbchaos-toxiproxy-bin=PATH, or use --cbchaos-proxy-backend=embedded")


class BackendUnavailable(ValueError):
    """An explicitly requested proxy backend cannot be used; the message says how to fix it."""


def _get(url: str, path: str, timeout: float) -> Any:
    """One ``GET`` on the API with the proxy client's stdlib transport (no httpx in a session's start)."""
    from pytest_cbchaos.proxy.http import HttpClient

    http = HttpClient(url.rstrip("/"), timeout=timeout, headers={"User-Agent": "pytest-cbchaos"})
    try:
        return http.request("GET", path)
    finally:
        http.close()


def probe_version(url: str, timeout: float = 1.0) -> str:
    """``GET /version`` -> version string (raises on any failure)."""
    response = _get(url, "/version", timeout)
    if response.status_code >= 400:
        raise RuntimeError(f"GET {url.rstrip('/')}/version: HTTP {response.status_code} {response.reason_phrase}")
    try:
        return str(response.json()["version"])
    except Exception:
        return response.text.strip()


def probe_capabilities(url: str, timeout: float = 2.0) -> set[str]:
    from pytest_cbchaos.proxy.http import TransportError

    try:
        response = _get(url, "/cbchaos/capabilities", timeout)
    except TransportError:
        return set()
    if response.status_code != 200:
        return set()
    try:
        return set(response.json().get("toxics", []))
    except ValueError:
        return set()


@dataclass
class ToxiproxyServer:
    url: str
    backend: str
    version: str
    capabilities_known: set[str] | None = None
    worker: str = "master"
    process: Any = None  # ManagedProcess for embedded/binary
    port_range: tuple[int, int] = DEFAULT_RANGE
    lease: PortLease | None = None
    container: Any = None
    _clients: list[Any] = field(default_factory=list, repr=False)
    _on_stop: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def capabilities(self) -> set[str]:
        """Extension toxic types; asked on first use, so a start never waits for the API to serve."""
        if self.capabilities_known is None:
            self.capabilities_known = probe_capabilities(self.url)
        return self.capabilities_known

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    def client(self, journal: Any = None) -> Any:
        from pytest_cbchaos.proxy.client import Client

        client = Client(self.url, journal=journal)
        self._clients.append(client)
        return client

    def proxy_name(self, name: str) -> str:
        """Shared (``url``) servers get ``cbchaos-<worker>-<name>`` so workers never collide."""
        return f"cbchaos-{self.worker}-{name}" if self.backend == "url" else name

    def create_proxy(self, name: str, upstream: str) -> "LeasedProxy":
        """A proxy on a port leased from ``port_range`` (re-enable must rebind the same port); a stale
        proxy of the same name is replaced. The handle owns the lease: ``delete()`` releases it."""
        from pytest_cbchaos.proxy.client import LeasedProxy, NotFound

        client = self.client()
        full_name = self.proxy_name(name)
        lease = allocate_port(self.port_range)
        try:
            try:
                client.get_proxy(full_name).delete()
            except NotFound:
                pass
            data = client._request("POST", "/proxies", {"name": full_name, "upstream": upstream,
                                                        "listen": f"127.0.0.1:{lease.port}", "enabled": True})
        except BaseException:
            lease.release()
            raise
        return LeasedProxy(client, data, lease)

    def stop(self) -> None:
        if self._on_stop is not None:
            try:
                self._on_stop()
            finally:
                self._on_stop = None
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self.process is not None:
            self.process.stop()
        if self.lease is not None:
            self.lease.release()
            self.lease = None


def _ready(url: str) -> Callable[[Any], bool]:
    def check(_proc: Any) -> bool:
        probe_version(url, timeout=0.5)
        return True
    return check


def _package_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _start_process(backend: str, argv: list[str], *, workdir: Path, lease: PortLease, url: str,
                   startup_timeout: float, worker: str, port_range: tuple[int, int], env: dict[str, str] | None) -> ToxiproxyServer:
    """The embedded server reports ready on a pipe once its API socket listens (its version is
    ours); a foreign binary is polled until ``GET /version`` answers."""
    from pytest_cbchaos.servers.process import ManagedProcess

    embedded = backend == "embedded"
    proc = ManagedProcess(f"toxiproxy-{backend}", argv, log_dir=workdir, env=env,
                          ready=None if embedded else _ready(url), ready_pipe=embedded,
                          startup_timeout=startup_timeout)
    try:
        proc.start()
    except BaseException:
        lease.release()
        raise
    return ToxiproxyServer(url=url, backend=backend, version=VERSION if embedded else probe_version(url),
                           worker=worker, process=proc, port_range=port_range, lease=lease)


def start_toxiproxy(backend: str = "embedded", *, workdir: Path, port_range: tuple[int, int] = DEFAULT_RANGE,
                    binary: str | None = None, url: str | None = None, image: str = DEFAULT_IMAGE,
                    seed: int | None = None, startup_timeout: float = 10.0, worker: str = "master",
                    docker_factory: Any = None) -> ToxiproxyServer:
    """Start (or attach to) a Toxiproxy-compatible server for this worker."""
    if backend not in BACKENDS:
        raise BackendUnavailable(f"proxy backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if backend == "url":
        return _attach_url(url or os.environ.get("TOXIPROXY_URL"), worker, port_range)
    if backend == "docker":
        return _start_docker(image, workdir=workdir, port_range=port_range, startup_timeout=startup_timeout,
                             worker=worker, factory=docker_factory)
    lease = allocate_port(port_range)
    api_url = f"http://127.0.0.1:{lease.port}"
    if backend == "binary":
        exe = binary or shutil.which("toxiproxy-server")
        if not exe or not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            lease.release()
            raise BackendUnavailable(BINARY_HINT if not binary else f"toxiproxy binary {binary!r} not found "
                                     "or not executable; " + BINARY_HINT)
        argv = [exe, "-host", "127.0.0.1", "-port", str(lease.port)]
        if seed is not None:
            argv += ["-seed", str(seed)]
        return _start_process("binary", argv, workdir=workdir, lease=lease, url=api_url,
                              startup_timeout=startup_timeout, worker=worker, port_range=port_range, env=None)
    argv = [sys.executable, "-m", "pytest_cbchaos.proxy", "-host", "127.0.0.1", "-port", str(lease.port),
            "--loopback-only"]
    if seed is not None:
        argv += ["-seed", str(seed)]
    env = _package_env()
    env.setdefault("LOG_LEVEL", "info")
    # The embedded proxy relays bytes and makes no TLS connection: an empty trust store spares the CA
    # bundle load aiohttp does at import (docs/fault-kit-design.md, "Start-up").
    env.update(SSL_CERT_FILE=os.devnull, SSL_CERT_DIR=os.devnull)
    return _start_process("embedded", argv, workdir=workdir, lease=lease, url=api_url,
                          startup_timeout=startup_timeout, worker=worker, port_range=port_range, env=env)


def _attach_url(url: str | None, worker: str, port_range: tuple[int, int]) -> ToxiproxyServer:
    if not url:
        raise BackendUnavailable("proxy backend 'url' needs --cbchaos-toxiproxy-url=http://HOST:PORT "
                                 "(or the TOXIPROXY_URL environment variable)")
    url = url.rstrip("/")
    try:
        version = probe_version(url, timeout=2.0)
    except Exception as exc:
        raise BackendUnavailable(f"Toxiproxy at {url} does not answer GET /version: {exc}") from None
    server = ToxiproxyServer(url=url, backend="url", version=version, worker=worker, port_range=port_range)

    def cleanup() -> None:  # a shared server: delete only this worker's proxies, never /reset
        from pytest_cbchaos.proxy.client import Client, ToxiproxyError

        with Client(url) as client:
            try:
                for name, proxy in client.proxies().items():
                    if name.startswith(f"cbchaos-{worker}-"):
                        proxy.delete()
            except ToxiproxyError:
                pass

    server._on_stop = cleanup
    return server


def docker_run_kwargs(image: str, port: int, labels: dict[str, str]) -> dict[str, Any]:
    """Arguments of ``containers.run`` for a Toxiproxy container on host networking."""
    return dict(image=image, command=["-host=127.0.0.1", f"-port={port}"], detach=True,
                network_mode="host", labels=labels, auto_remove=False)


def _start_docker(image: str, *, workdir: Path, port_range: tuple[int, int], startup_timeout: float,
                  worker: str, factory: Any) -> ToxiproxyServer:
    from pytest_cbchaos.servers import docker_backend as db

    try:
        client = db.docker_client(factory)
    except db.DockerUnavailable as exc:
        raise BackendUnavailable(f"proxy backend 'docker': {exc}") from None
    if sys.platform != "linux":
        raise BackendUnavailable("proxy backend 'docker' needs host networking (Linux only)")
    db.sweep_stale(client, {db.RUN_UID})
    lease = allocate_port(port_range)
    url = f"http://127.0.0.1:{lease.port}"
    labels = db.run_labels({"cbchaos.role": "toxiproxy", "cbchaos.worker": worker})
    try:
        container = client.containers.run(**docker_run_kwargs(image, lease.port, labels))
    except BaseException:
        lease.release()
        raise
    deadline = time.monotonic() + startup_timeout
    delay = 0.005
    while True:
        try:
            version = probe_version(url, timeout=0.5)
            break
        except Exception as exc:
            if time.monotonic() >= deadline:
                db.remove_container(container)
                lease.release()
                raise BackendUnavailable(f"Toxiproxy container from {image} not ready after {startup_timeout}s: {exc}") from None
            time.sleep(delay)  # readiness polling with backoff, not synchronisation
            delay = min(delay * 2, 0.1)
    server = ToxiproxyServer(url=url, backend="docker", version=version, worker=worker, port_range=port_range, lease=lease, container=container)
    server._on_stop = lambda: db.remove_container(container)
    return server
