"""Benchmark: added round-trip time of a Redis PING through the embedded proxy (no toxics) and
64 KiB-value throughput, each against a direct connection in the same run.

    .venv/bin/python bench/bench_proxy.py [--pings 5000] [--runs 5] [--values 400]

Prints medians over several runs; never asserts anything.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.servers.process import ManagedProcess
from pytest_cbchaos.servers.toxiproxy import start_toxiproxy

PING = b"*1\r\n$4\r\nPING\r\n"


def ping_rtts(port: int, password: str, n: int) -> list[float]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    auth = f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n".encode()
    sock.sendall(auth)
    sock.recv(64)
    out = []
    for _ in range(200):  # warm-up
        sock.sendall(PING)
        sock.recv(64)
    for _ in range(n):
        t = time.perf_counter_ns()
        sock.sendall(PING)
        if sock.recv(64) != b"+PONG\r\n":
            raise RuntimeError("unexpected reply")
        out.append((time.perf_counter_ns() - t) / 1000.0)
    sock.close()
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def throughput(port: int, password: str, values: int) -> float:
    client = redis.Redis(host="127.0.0.1", port=port, password=password)
    blob = secrets.token_bytes(64 * 1024)
    client.set("bench:blob", blob)
    start = time.perf_counter()
    for _ in range(values):
        client.set("bench:blob", blob)
        client.get("bench:blob")
    elapsed = time.perf_counter() - start
    client.close()
    return (2 * values * len(blob)) / elapsed / 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pings", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--values", type=int, default=400)
    args = ap.parse_args()
    exe = shutil.which("redis-server")
    if exe is None:
        print("redis-server not found", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="cbchaos-bench-"))
    lease = allocate_port()
    password = secrets.token_hex(16)

    def ready(_p: ManagedProcess) -> bool:
        return bool(redis.Redis(host="127.0.0.1", port=lease.port, password=password, socket_timeout=0.5).ping())

    rproc = ManagedProcess("redis", [exe, "--port", str(lease.port), "--bind", "127.0.0.1", "--requirepass",
                                     password, "--save", "", "--appendonly", "no", "--dir", str(work)],
                           log_dir=work, ready=ready)
    rproc.start()
    server = start_toxiproxy("embedded", workdir=work / "tp")
    try:
        client = server.client()
        proxy = client.create_proxy("redis", f"127.0.0.1:{lease.port}")
        p50s_d, p50s_p, p99s_d, p99s_p, added50, added99 = [], [], [], [], [], []
        tp_d, tp_p = [], []
        for run in range(args.runs):
            direct = ping_rtts(lease.port, password, args.pings)
            proxied = ping_rtts(proxy.listen_port, password, args.pings)
            p50s_d.append(pct(direct, 0.5)); p50s_p.append(pct(proxied, 0.5))
            p99s_d.append(pct(direct, 0.99)); p99s_p.append(pct(proxied, 0.99))
            added50.append(p50s_p[-1] - p50s_d[-1]); added99.append(p99s_p[-1] - p99s_d[-1])
            tp_d.append(throughput(lease.port, password, args.values))
            tp_p.append(throughput(proxy.listen_port, password, args.values))
            print(f"run {run + 1}: PING p50 direct {p50s_d[-1]:.1f} us, proxied {p50s_p[-1]:.1f} us "
                  f"(added {added50[-1]:.1f} us); p99 direct {p99s_d[-1]:.1f} us, proxied {p99s_p[-1]:.1f} us "
                  f"(added {added99[-1]:.1f} us); 64KiB SET+GET direct {tp_d[-1]:.0f} MB/s, proxied {tp_p[-1]:.0f} MB/s")
        med = statistics.median
        print(f"\nmedian of {args.runs} runs x {args.pings} pings (no toxics):")
        print(f"  PING p50: direct {med(p50s_d):.1f} us, proxied {med(p50s_p):.1f} us, "
              f"added {med(added50):.1f} us (target <= 250 us), ratio {med(p50s_p) / med(p50s_d):.2f}x")
        print(f"  PING p99: direct {med(p99s_d):.1f} us, proxied {med(p99s_p):.1f} us, added {med(added99):.1f} us, "
              f"ratio {med(p99s_p) / med(p99s_d):.2f}x")
        print(f"  64 KiB values ({args.values} SET+GET per run): direct {med(tp_d):.0f} MB/s, proxied {med(tp_p):.0f} MB/s, "
              f"ratio {med(tp_p) / med(tp_d):.2f}")
    finally:
        server.stop()
        rproc.stop()
        lease.release()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
