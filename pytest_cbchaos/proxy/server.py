"""Proxy state and listeners of the embedded server (the ``Collection``/``Proxy`` of Toxiproxy).

Everything runs on one asyncio loop in the server process: API handlers mutate this state and
the data plane reads it, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from pytest_cbchaos.proxy.gojson import Float32
from pytest_cbchaos.proxy.link import Connection, Link, _Side, split_host_port
from pytest_cbchaos.proxy.toxics import REGISTRY
from pytest_cbchaos.proxy.toxics.base import Toxic

STREAMS = ("upstream", "downstream")


class ApiError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class ToxicSpec:
    name: str
    type: str
    stream: str  # normalised direction
    toxicity: Float32
    attributes: dict[str, Any]
    stream_sent: str = ""  # as the client sent it (Toxiproxy echoes it unnormalised)

    @property
    def cls(self) -> type[Toxic]:
        return REGISTRY[self.type]

    def make(self) -> Toxic:
        return self.cls(**self.attributes)

    def to_json(self) -> dict[str, Any]:
        return {"attributes": {k: self.attributes[k] for k in self.cls.ATTRS}, "name": self.name,
                "type": self.type, "stream": self.stream_sent or self.stream, "toxicity": self.toxicity}


def _wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def resolve_listen(listen: str, loopback_only: bool) -> tuple[str, int]:
    """Resolve a listen address the way Toxiproxy's ``net.Listen`` would; raises ApiError 500.

    An empty ``listen`` (missing or null in the body) is Go's wildcard with port 0: any free port,
    on 127.0.0.1 here (docs/proxy.md).
    """
    if listen == "":
        return "127.0.0.1", 0
    try:
        host, port_text = split_host_port(listen)
    except ValueError as exc:
        raise ApiError(f"listen tcp: {exc}", 500) from None
    try:
        port = int(port_text) if port_text else 0
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ApiError(f"listen tcp: address {port_text}: invalid port", 500) from None
    if _wildcard(host):
        return ("127.0.0.1" if loopback_only or host == "" or host == "0.0.0.0" else "::"), port
    try:
        ipaddress.ip_address(host)
        return host, port
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ApiError(f"listen tcp: lookup {host}: no such host", 500) from None
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    return infos[0][4][0], port


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        reason = (exc.strerror or str(exc))
        reason = reason[:1].lower() + reason[1:]
        raise ApiError(f"listen tcp {shown}: bind: {reason}", 500) from None
    return sock


class ProxyRuntime:
    def __init__(self, app: "ProxyCollection", name: str, listen: str, upstream: str) -> None:
        self.app = app
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.toxics: dict[str, list[ToxicSpec]] = {"upstream": [], "downstream": []}
        self.server: asyncio.base_events.Server | None = None
        self.conns: set[Connection] = set()
        self.rng = app.rng
        self.ext_state: dict[Any, Any] = {}  # per-proxy state of extension toxics (request counters)

    def log(self, message: str) -> None:
        self.app.log(f"proxy={self.name} {message}")

    # -- listener ------------------------------------------------------------------------------
    def bound_address(self) -> tuple[str, int] | None:
        if self.server is None:
            return None
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        if self.server is not None:
            raise ApiError("proxy already started", 409)
        host, port = resolve_listen(self.listen, self.app.loopback_only)
        sock = bind_socket(host, port)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Side(self._accepted), sock=sock)
        bhost, bport = self.bound_address()  # type: ignore[misc]
        self.listen = f"[{bhost}]:{bport}" if ":" in bhost else f"{bhost}:{bport}"
        self.enabled = True
        self.log(f"started listen={self.listen} upstream={self.upstream}")

    def _accepted(self, side: _Side) -> None:
        Connection(self, side)

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.conns):
            conn.close()
        self.enabled = False

    # -- toxics --------------------------------------------------------------------------------
    def find_toxic(self, name: str) -> ToxicSpec | None:
        for stream in STREAMS:
            for spec in self.toxics[stream]:
                if spec.name == name:
                    return spec
        return None

    def live_links(self, stream: str) -> list[Link]:
        return [link for conn in self.conns for link in conn.links() if link.direction == stream]

    def add_toxic(self, spec: ToxicSpec) -> None:
        self.toxics[spec.stream].append(spec)
        for link in self.live_links(spec.stream):
            link.add(spec)

    async def update_toxic(self, old: ToxicSpec, new: ToxicSpec) -> None:
        chain = self.toxics[old.stream]
        chain[chain.index(old)] = new
        await asyncio.gather(*(link.update(new) for link in self.live_links(old.stream)))

    async def remove_toxic(self, spec: ToxicSpec) -> None:
        self.toxics[spec.stream].remove(spec)
        self.ext_state.pop(("http_fault", spec.name), None)
        await asyncio.gather(*(link.remove(spec.name) for link in self.live_links(spec.stream)))

    async def remove_all_toxics(self) -> None:
        for stream in STREAMS:
            for spec in list(self.toxics[stream]):
                await self.remove_toxic(spec)

    def count_bytes(self, link: Link) -> None:
        self.app.count_bytes(self, link)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled, "Logger": {},
                "toxics": [t.to_json() for s in STREAMS for t in self.toxics[s]]}


class ProxyCollection:
    """All proxies of one server, plus server-wide settings."""

    def __init__(self, *, seed: int | None = None, loopback_only: bool = True,
                 proxy_metrics: bool = False, runtime_metrics: bool = False, log_level: str = "info") -> None:
        import random
        self.rng = random.Random(seed)
        self.loopback_only = loopback_only
        self.proxies: dict[str, ProxyRuntime] = {}
        self.proxy_metrics = proxy_metrics
        self.runtime_metrics = runtime_metrics
        self.log_level = log_level
        self.byte_counters: dict[tuple[str, str, str, str, str], int] = {}
        self.started = time.time()

    def log(self, message: str) -> None:
        if self.log_level not in ("panic", "fatal", "error", "warn"):
            print(message, file=sys.stderr, flush=True)

    def get(self, name: str) -> ProxyRuntime:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError("proxy not found", 404)
        return proxy

    def count_bytes(self, proxy: ProxyRuntime, link: Link) -> None:
        if not self.proxy_metrics:
            return
        for metric, value in (("received", link.received), ("sent", link.sent)):
            key = (metric, link.direction, proxy.name, proxy.listen, proxy.upstream)
            self.byte_counters[key] = self.byte_counters.get(key, 0) + value

    def metrics_text(self) -> str:
        lines: list[str] = []
        if self.proxy_metrics:
            live: dict[tuple[str, str, str, str, str], int] = dict(self.byte_counters)
            for proxy in self.proxies.values():
                for conn in proxy.conns:
                    for link in conn.links():
                        if link.closed:
                            continue
                        for metric, value in (("received", link.received), ("sent", link.sent)):
                            key = (metric, link.direction, proxy.name, proxy.listen, proxy.upstream)
                            live[key] = live.get(key, 0) + value
            for metric in ("received", "sent"):
                name = f"toxiproxy_proxy_{metric}_bytes_total"
                lines.append(f"# HELP {name} The total bytes {metric} on a given proxy link")
                lines.append(f"# TYPE {name} counter")
                for key, value in sorted(live.items()):
                    if key[0] == metric:
                        lines.append(f'{name}{{direction="{key[1]}",listener="{key[3]}",proxy="{key[2]}",'
                                     f'upstream="{key[4]}"}} {value}')
        if self.runtime_metrics:
            import resource
            usage = resource.getrusage(resource.RUSAGE_SELF)
            lines.append("# TYPE process_cpu_seconds_total counter")
            lines.append(f"process_cpu_seconds_total {usage.ru_utime + usage.ru_stime}")
            lines.append("# TYPE process_start_time_seconds gauge")
            lines.append(f"process_start_time_seconds {self.started}")
        return "\n".join(lines) + "\n"

    async def shutdown(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
