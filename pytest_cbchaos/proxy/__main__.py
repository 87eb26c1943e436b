"""``python -m pytest_cbchaos.proxy``: the embedded Toxiproxy-compatible server.

Accepts toxiproxy-server's flags (``-host``, ``-port``, ``-config``, ``-seed``, ``-proxy-metrics``,
``-runtime-metrics``, ``-version``; env ``LOG_LEVEL``) plus ``--port-file PATH`` (the bound API
port is written there once listening) and ``--loopback-only`` (default on).

Start is lean (docs/fault-kit-design.md, "Start-up"): the API socket is bound and listening before
aiohttp and the proxy runtime are imported, then readiness is reported (port file, and the line
``ready`` on the inherited pipe named by ``CBCHAOS_READY_FD``); requests that arrive meanwhile wait
in the listen backlog and are served once the app runs on that same socket.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from typing import Any

from pytest_cbchaos.proxy import VERSION

READY_FD_ENV = "CBCHAOS_READY_FD"
LOG_LEVELS = ("panic", "fatal", "error", "warn", "info", "debug", "trace")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pytest_cbchaos.proxy", allow_abbrev=False,
                                description="Embedded Toxiproxy 2.x compatible server (pytest-cbchaos).")
    p.add_argument("-host", "--host", default="localhost", help="host for the API to listen on")
    p.add_argument("-port", "--port", default="8474", help="port for the API to listen on")
    p.add_argument("-config", "--config", default="", help="JSON file with proxies to create (populate format)")
    p.add_argument("-seed", "--seed", type=int, default=None, help="seed for toxicity rolls and jitter")
    p.add_argument("-proxy-metrics", "--proxy-metrics", action="store_true", help="enable proxy metrics")
    p.add_argument("-runtime-metrics", "--runtime-metrics", action="store_true", help="enable runtime metrics")
    p.add_argument("-version", "--version", action="store_true", help="print the version and exit")
    p.add_argument("--port-file", default=None, help="write the bound API port to this file once listening")
    p.add_argument("--loopback-only", dest="loopback_only", action="store_true", default=True,
                   help="bind wildcard addresses on 127.0.0.1 (default)")
    p.add_argument("--no-loopback-only", dest="loopback_only", action="store_false")
    args = p.parse_args(argv)
    try:
        port = int(args.port)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        p.error(f"-port: invalid value {args.port!r}: expected an integer 0-65535")
    args.port = port
    return args


def bind_api(host: str, port: int, loopback_only: bool) -> socket.socket:
    """The listening API socket (``SO_REUSEADDR`` as aiohttp's ``reuse_address``)."""
    if loopback_only and host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    family, _, _, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def report_ready(port: int, port_file: str | None) -> None:
    """Port file (atomic rename) and ``ready`` on the launcher's pipe, when it gave one."""
    if port_file:
        tmp = Path(port_file + ".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, port_file)
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is not None:
        try:
            os.write(int(fd), b"ready\n")
            os.close(int(fd))
        except (OSError, ValueError):
            pass  # a launcher that gave no usable pipe polls the API instead


async def load_config(collection: Any, path: str) -> None:
    """Create the proxies of a ``-config`` file; errors are logged, never fatal (as Toxiproxy)."""
    from pytest_cbchaos.proxy.api import decode_proxy_list
    from pytest_cbchaos.proxy.gojson import DecodeError
    from pytest_cbchaos.proxy.server import ApiError, ProxyRuntime

    try:
        entries = decode_proxy_list(Path(path).read_bytes())
    except OSError as exc:
        collection.log(f"error reading config file {path}: {exc}")
        return
    except DecodeError as exc:
        collection.log(f"error reading config file {path}: bad request body: {exc}")
        return
    for i, entry in enumerate(entries, 1):
        try:
            if not entry["name"] or not entry["upstream"]:
                raise ApiError(f"missing required field: name or upstream at proxy {i}", 400)
            proxy = ProxyRuntime(collection, entry["name"], entry["listen"], entry["upstream"])
            if entry["enabled"]:
                await proxy.start()
            collection.proxies[proxy.name] = proxy
        except ApiError as exc:
            collection.log(f"config {path}: proxy {i}: {exc.message}")


async def serve(args: argparse.Namespace, sock: socket.socket) -> None:
    import asyncio
    import signal

    from aiohttp import web

    from pytest_cbchaos.proxy.api import make_app
    from pytest_cbchaos.proxy.server import ProxyCollection

    level = os.environ.get("LOG_LEVEL", "info").lower()
    collection = ProxyCollection(seed=args.seed, loopback_only=args.loopback_only,
                                 proxy_metrics=args.proxy_metrics, runtime_metrics=args.runtime_metrics,
                                 log_level=level if level in LOG_LEVELS else "info")
    port = sock.getsockname()[1]
    if args.config:  # the config's proxies exist before anyone is told the server is ready
        await load_config(collection, args.config)
        report_ready(port, args.port_file)
    runner = web.AppRunner(make_app(collection), access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    collection.log(f"API HTTP server starting host={sock.getsockname()[0]} port={port} version={VERSION}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    collection.log("shutting down")
    try:
        await asyncio.wait_for(_shutdown(collection, runner), 30.0)
    except asyncio.TimeoutError:
        pass


async def _shutdown(collection: Any, runner: Any) -> None:
    await collection.shutdown()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        print(f"toxiproxy-server version {VERSION}")
        return 0
    try:
        sock = bind_api(args.host, args.port, args.loopback_only)
    except OSError as exc:
        print(f"cannot start API server: {exc}", file=sys.stderr)
        return 1
    if not args.config:
        report_ready(sock.getsockname()[1], args.port_file)
    import asyncio

    try:
        asyncio.run(serve(args, sock))
    except OSError as exc:
        print(f"cannot start API server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
