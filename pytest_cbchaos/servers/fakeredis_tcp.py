"""Embedded Redis default: fakeredis' TCP server as a child process (``python -m`` this module).

Running it out of process lets the same proxy and process faults (SIGKILL, SIGSTOP, restart)
apply to it as to a real redis-server. Lua needs ``lupa`` (extra ``fakeredis[lua]``).
"""

from __future__ import annotations

import argparse
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_cbchaos.servers.fakeredis_tcp")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--requirepass", default="")
    args = parser.parse_args(argv)
    if args.bind not in ("127.0.0.1", "localhost", "::1"):
        parser.error(f"--bind {args.bind!r}: only loopback addresses are allowed")
    from fakeredis import TcpFakeServer

    server = TcpFakeServer((args.bind, args.port), server_type="redis")
    server.daemon_threads = True
    if args.requirepass:
        server.fake_server.config[b"requirepass"] = args.requirepass.encode()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"fakeredis TCP server listening on {args.bind}:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
