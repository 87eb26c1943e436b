"""Breaker benchmarks (figures only, never assertions).

0. Against peers, in interleaved rounds (medians and the median of per-round ratios; the machine
   may be busy, so only paired figures are comparable): in-memory ``call(noop)`` CPU per op vs
   pybreaker 1.4.1 and circuitbreaker 2.1.3, the kit's allow+record pair (the public store ops: the gate's
   CLOSED admission builds its reply only when read, the success builds its reply) and the hot
   allow+record pair (``HotOps.hot_gate`` + ``hot_success``, the same ops as ``call()`` runs them, no
   reply built) vs pybreaker's call; and
   Redis-backed decisions/s (one ``call(noop)`` each, direct to redis-server, 1 thread and 8
   processes) vs pybreaker with ``CircuitRedisStorage``.
1. In-memory allow+record pair: median ns/op of several runs, ratio to a baseline measured in the
   same process (a bare lock + dict lookup + ``uuid``-free function call pair). Also, in the same
   process: the same pair with the closed-state fast path off (every op through the kernel under
   the lock, as before the fast path) and ``CircuitBreaker.call`` of a no-op on an InMemoryStore.
2. Round trips per decision on a real redis-server counted from the server (``INFO commandstats``):
   EVALSHA calls per allow / record_success / record_failure (must be exactly 1).
3. ops/s of allow+record pairs: direct vs through the embedded fault proxy, 1 client and 8 processes.

    .venv/bin/python bench/bench_breaker.py [--runs 5] [--pairs 20000] [--redis-pairs 2000] [--redis-peers-only]
        [--no-hiredis] [--redis-history]
"""

from __future__ import annotations

import os
import sys

if os.environ.get("CBCHAOS_BENCH_NO_HIREDIS"):  # --no-hiredis: redis-py's pure-Python parser, in spawned workers too
    sys.modules["hiredis"] = None  # type: ignore[assignment]

import argparse
import multiprocessing as mp
import statistics
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from pytest_cbchaos.breaker import CircuitBreaker, InMemoryStore, RedisStore
from pytest_cbchaos.breaker.conformance import workers


def bench_memory(runs: int, pairs: int) -> None:
    st = InMemoryStore()
    lock, d = threading.Lock(), {"b": object()}

    def base_pair() -> None:
        with lock:
            d.get("b")
        with lock:
            d.get("b")

    def pair() -> None:
        r = st.try_transition_and_claim_probe("b")
        if r.admitted:
            st.atomic_record_success("b")

    def med(fn: Any) -> float:
        out = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            for _ in range(pairs):
                fn()
            out.append((time.perf_counter_ns() - t0) / pairs)
        return statistics.median(out)
    class KernelOnly(InMemoryStore):
        """Subclass => fast path off: the pre-fast-path code path, for an in-process before/after."""

    ko = KernelOnly()

    def kernel_pair() -> None:
        r = ko.try_transition_and_claim_probe("b")
        if r.admitted:
            ko.atomic_record_success("b")

    cb = CircuitBreaker("b")

    def noop() -> None:
        return None

    def cb_call() -> None:
        cb.call(noop)

    b, m = med(base_pair), med(pair)
    k, c = med(kernel_pair), med(cb_call)
    print(f"in-memory allow+record pair: median {m:.0f} ns/op (target <= 2000), baseline lock+dict pair "
          f"{b:.0f} ns/op, ratio {m / b:.1f}x")
    print(f"  same pair, fast path off (kernel under lock): median {k:.0f} ns/op, ratio {k / b:.1f}x "
          f"(fast path speed-up {k / m:.1f}x)")
    print(f"  CircuitBreaker.call(no-op) on InMemoryStore: median {c:.0f} ns/op, ratio {c / b:.1f}x")


def _rounds(contenders: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """``contenders[name]() -> figure``, run A B C, B C A, ... per round (rotation evens out drift)."""
    names = list(contenders)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            out[n].append(contenders[n]())
    return out


def _ratios(rows: dict[str, list[float]], a: str, b: str) -> str:
    rs = [x / y for x, y in zip(rows[a], rows[b])]
    return f"{statistics.median(rs):.2f} (min {min(rs):.2f}, max {max(rs):.2f})"


def bench_peers_memory(rounds: int, ops: int) -> None:
    import circuitbreaker
    import pybreaker

    def noop() -> None:
        return None

    def cpu_per_op(fn: Any) -> Any:
        def run() -> float:
            t0 = time.process_time_ns()
            for _ in range(ops):
                fn()
            return (time.process_time_ns() - t0) / ops
        return run

    kit, st = CircuitBreaker("b"), InMemoryStore()
    pyb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    cbk = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=60)

    def pair() -> None:
        if st.try_transition_and_claim_probe("b").admitted:
            st.atomic_record_success("b")

    hot = InMemoryStore().hot_ops()
    assert hot is not None
    counter = hot.op_ids.counter

    def hot_pair() -> None:  # the store ops of call()'s hot path: the same ops, no reply built
        hot.hot_gate("b", next(counter), 30.0)
        hot.hot_success("b", next(counter))

    rows = _rounds({"kit call": cpu_per_op(lambda: kit.call(noop)), "kit allow+record": cpu_per_op(pair),
                    "kit hot allow+record": cpu_per_op(hot_pair),
                    "pybreaker call": cpu_per_op(lambda: pyb.call(noop)),
                    "circuitbreaker call": cpu_per_op(lambda: cbk.call(noop))}, rounds)
    print(f"## in-memory, CPU ns per op ({rounds} interleaved rounds of {ops:,} ops; medians)")
    for name, xs in rows.items():
        print(f"  {name:<20} {statistics.median(xs):8.0f} ns")
    print(f"  kit call / pybreaker call: {_ratios(rows, 'kit call', 'pybreaker call')}")
    print(f"  kit call / circuitbreaker call: {_ratios(rows, 'kit call', 'circuitbreaker call')}")
    print(f"  kit allow+record / pybreaker call: {_ratios(rows, 'kit allow+record', 'pybreaker call')}")
    print(f"  kit hot allow+record / pybreaker call: {_ratios(rows, 'kit hot allow+record', 'pybreaker call')}")


def _noop() -> None:
    return None


def _kit_breaker(conn: dict[str, Any], name: str) -> Any:
    return CircuitBreaker(name, store=RedisStore(redis.Redis(**conn, socket_timeout=5), key_prefix="bench"))


def _pybreaker(conn: dict[str, Any], name: str) -> Any:
    import pybreaker

    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, redis.Redis(**conn, socket_timeout=5),
                                            namespace=name)
    return pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60, state_storage=storage)


def _history(cb: Any) -> None:
    """Fill the kit's record with 16 ``recent_ops`` entries (failures and the successes that clear them), as a
    breaker that saw failures within the record's TTL has: its closed-state scripts validate them per call."""
    if isinstance(cb, CircuitBreaker):
        for _ in range(8):
            cb.store.atomic_record_failure(cb.backend, 1000, 60)
            cb.store.atomic_record_success(cb.backend)


def _calls_worker(kind: str, conn: dict[str, Any], name: str, n: int, barrier: Any, out: Any,
                  history: bool = False) -> None:
    """``n`` decisions (``call(noop)``) on one shared breaker name; reports elapsed seconds."""
    cb = (_kit_breaker if kind == "kit" else _pybreaker)(conn, name)
    if history:
        _history(cb)
    cb.call(_noop)
    barrier.wait(timeout=60)
    t0 = time.perf_counter()
    for _ in range(n):
        cb.call(_noop)
    out.put(time.perf_counter() - t0)


def bench_peers_redis(conn: dict[str, Any], rounds: int, n: int, history: bool = False) -> None:
    ctx = mp.get_context("spawn")

    def one(kind: str) -> Any:
        cb = (_kit_breaker if kind == "kit" else _pybreaker)(conn, f"one-{kind}")
        if history:
            _history(cb)
        cb.call(_noop)

        def run() -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                cb.call(_noop)
            return n / (time.perf_counter() - t0)
        return run

    def eight(kind: str) -> Any:
        def run() -> float:
            barrier, out = ctx.Barrier(8), ctx.Queue()
            name = f"eight-{kind}-{uuid.uuid4().hex[:6]}"
            ps = [ctx.Process(target=_calls_worker, args=(kind, conn, name, n // 4, barrier, out, history))
                  for _ in range(8)]
            for p in ps:
                p.start()
            elapsed = [out.get(timeout=300) for _ in ps]
            for p in ps:
                p.join(timeout=30)
            return 8 * (n // 4) / max(elapsed)
        return run

    rows = _rounds({"kit 1 thread": one("kit"), "pybreaker 1 thread": one("pyb")}, rounds)
    rows8 = _rounds({"kit 8 processes": eight("kit"), "pybreaker 8 processes": eight("pyb")}, max(1, rounds // 2 + 1))
    rec = "the kit's record holding 16 recent_ops entries" if history else "no record yet"
    print(f"## Redis-backed decisions/s (call(noop), direct to redis-server, {rec}; medians of interleaved rounds)")
    for name, xs in {**rows, **rows8}.items():
        print(f"  {name:<22} {statistics.median(xs):10,.0f} /s")
    print(f"  kit / pybreaker CircuitRedisStorage, 1 thread: {_ratios(rows, 'kit 1 thread', 'pybreaker 1 thread')}")
    print(f"  kit / pybreaker CircuitRedisStorage, 8 processes: "
          f"{_ratios(rows8, 'kit 8 processes', 'pybreaker 8 processes')}")


def _script_cost(admin: redis.Redis) -> None:
    """Server-side cost of the commands the peer runs used (``INFO commandstats`` usec_per_call)."""
    st = admin.info("commandstats")
    row = ", ".join(f"{k.removeprefix('cmdstat_')} {v['calls']:,} calls {v['usec_per_call']:.1f} us"
                    for k, v in sorted(st.items()) if k.removeprefix("cmdstat_") in ("evalsha", "get", "set"))
    print(f"  server-side per call (INFO commandstats): {row}")


def calls(admin: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in admin.info("commandstats").items()}


def bench_redis(runs: int, n: int, peers_only: bool = False, history: bool = False) -> None:
    from pytest_cbchaos.servers.redis import start_redis
    from pytest_cbchaos.servers.toxiproxy import start_toxiproxy

    work = Path(tempfile.mkdtemp(prefix="cbchaos-bench-"))
    server = start_redis("binary", workdir=work / "redis")
    proxy_srv = start_toxiproxy("embedded", workdir=work / "proxy")
    try:

        proxy = proxy_srv.create_proxy("redis", f"{server.host}:{server.port}")
        admin = server.client()
        direct = {"host": server.host, "port": server.port, "password": server.password}
        bench_peers_redis(direct, runs, n, history)
        _script_cost(admin)
        if peers_only:
            return
        proxied = {"host": proxy.listen_host, "port": proxy.listen_port, "password": server.password}
        st = RedisStore(redis.Redis(**direct, socket_timeout=5), key_prefix="bench")
        st.atomic_record_failure("rt", 1000, 60)
        st.try_transition_and_claim_probe("rt")
        st.atomic_record_success("rt")
        for name, fn in [("allow", lambda: st.try_transition_and_claim_probe("rt")),
                         ("record_success", lambda: st.atomic_record_success("rt")),
                         ("record_failure", lambda: st.atomic_record_failure("rt", 1000, 60))]:
            before = calls(admin)
            fn()
            after = calls(admin)
            print(f"round trips per {name}: {after.get('evalsha', 0) - before.get('evalsha', 0)} EVALSHA "
                  f"(script-internal: {sorted(k for k in after if after[k] != before.get(k, 0) and k not in ('evalsha', 'info'))})")
        for label, conn in (("direct", direct), ("proxy", proxied)):
            s = RedisStore(redis.Redis(**conn, socket_timeout=5), key_prefix="bench")
            rates = []
            for _ in range(runs):
                t0 = time.perf_counter()
                for _ in range(n):
                    r = s.try_transition_and_claim_probe("ops")
                    if r.admitted:
                        s.atomic_record_success("ops")
                rates.append(n / (time.perf_counter() - t0))
            one = statistics.median(rates)
            ctx = mp.get_context("spawn")
            rates8 = []
            for _ in range(max(1, runs // 2)):
                barrier, out = ctx.Barrier(8), ctx.Queue()
                c = {**conn, "key_prefix": "bench"}
                ps = [ctx.Process(target=workers.load, args=(c, f"ops8-{uuid.uuid4().hex[:4]}", n // 4, barrier, out))
                      for _ in range(8)]
                for p in ps:
                    p.start()
                el = [out.get(timeout=120) for _ in ps]
                for p in ps:
                    p.join(timeout=30)
                rates8.append(8 * (n // 4) / max(el))
            eight = statistics.median(rates8)
            print(f"allow+record pairs/s {label}: 1 client {one:,.0f}; 8 processes {eight:,.0f} "
                  f"(ratio 8p/1c {eight / one:.2f})")
        admin.close()
    finally:
        proxy_srv.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=20000)
    ap.add_argument("--redis-pairs", type=int, default=2000)
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--redis-peers-only", action="store_true", help="only the Redis-backed peer comparison")
    ap.add_argument("--no-hiredis", action="store_true", help="measure without the optional hiredis parser")
    ap.add_argument("--redis-history", action="store_true",
                    help="Redis peer comparison with the kit's record holding 16 recent_ops entries")
    a = ap.parse_args()
    if a.no_hiredis and "redis" in sys.modules and not os.environ.get("CBCHAOS_BENCH_NO_HIREDIS"):
        os.environ["CBCHAOS_BENCH_NO_HIREDIS"] = "1"  # redis is imported already: re-run this script with it blocked
        os.execv(sys.executable, [sys.executable, *sys.argv])
    from redis.utils import HIREDIS_AVAILABLE

    print(f"redis-py parser: {'hiredis' if HIREDIS_AVAILABLE else 'pure Python'}")
    if not a.redis_peers_only:
        bench_peers_memory(max(a.runs, 5), a.pairs)
        bench_memory(a.runs, a.pairs)
    if not a.memory_only:
        bench_redis(a.runs, a.redis_pairs, a.redis_peers_only, a.redis_history)


if __name__ == "__main__":
    main()
