"""Sentinel topology timings (docs/redis-topologies.md), medians of N runs:

* ready: start of 1 primary + 2 replicas + 3 sentinels until ready (replication caught up, sentinels agree);
* client to the new primary: from the fault (``SENTINEL FAILOVER``, or SIGKILL of the primary) until a
  Sentinel-managed client writes to the new primary for good (every later acknowledged write survives);
* cluster: start of 3 shards with a replica each until ready; from ``CLUSTER FAILOVER`` until a ``RedisCluster``
  client writes with the promoted replica as the shard's primary;
* lost acknowledged breaker writes per split brain (``isolate_primary()``, a store writing every 20 ms
  until the sentinels promote a replica, heal), without WAIT and with ``wait_replicas=1``: with WAIT the
  writes whose reply says ``_replicas_acked >= 1`` are the acknowledged ones;
* replica delay: from a write acknowledged by the primary until both replicas have it, without and with
  ``replication_lag(100)``;
* cluster ``migrate_slot``: moving a slot with one key to another primary, until every primary agrees.

    .venv/bin/python bench/bench_topology.py [--runs 5] [--only sentinel|cluster]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pytest_cbchaos.breaker import RedisStore
from pytest_cbchaos.breaker.lost_writes import lost_acknowledged_writes, read_survivors
from pytest_cbchaos.env import Environment
from pytest_cbchaos.faults.controller import FaultController
from pytest_cbchaos.history.ops import Op
from pytest_cbchaos.settings import Settings


def client_switch(topo: Any, fault: str) -> float:
    """Seconds from the fault until the client's writes land on the new primary for good."""
    nemesis = FaultController().sentinel(topo)
    client = topo.master_client(socket_timeout=0.5)
    old = topo.primary()
    attempts: list[tuple[float, int, bool]] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                client.set(f"k:{i}", 1)
                attempts.append((time.monotonic(), i, True))
            except Exception:
                attempts.append((time.monotonic(), i, False))
            time.sleep(0.01)  # write pace of the probe client

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    time.sleep(0.1)  # a few writes before the fault
    t0 = time.monotonic()
    healer = None
    if fault == "failover":
        nemesis.failover()
    else:
        healer = nemesis.kill(old)
        nemesis.wait_new_primary(old)
    new = topo.primary()
    time.sleep(0.5)  # writes after the switch, so that "for good" is observed
    stop.set()
    t.join()
    with new.admin() as admin:
        bad_until = t0
        for at, i, ok in attempts:
            if at >= t0 and (not ok or not admin.exists(f"k:{i}")):
                bad_until = at
    if healer is not None:
        healer.heal()
    topo.wait_ready(15)
    later = [at for at, i, ok in attempts if ok and at > bad_until]
    return (later[0] if later else bad_until) - t0


def split_brain_losses(topo: Any, wait_replicas: int) -> tuple[int, int]:
    """(lost acknowledged writes, writes acknowledged) for one split brain."""
    nemesis = FaultController().sentinel(topo)
    store = RedisStore(topo.master_client(), key_prefix=f"bt{uuid.uuid4().hex[:8]}", wait_replicas=wait_replicas,
                       wait_timeout_ms=100)
    ops: list[Op] = []

    def write() -> None:
        op_id = uuid.uuid4().hex
        t = time.monotonic()
        try:
            reply = store.atomic_record_failure("b", 1_000_000, 60, op_id=op_id)
        except Exception:
            return
        if wait_replicas and (reply.get("_replicas_acked") or 0) < wait_replicas:
            return  # not acknowledged under the durability policy
        ops.append(Op(len(ops), 0, "record_failure", {"op_id": op_id}, {"applied": reply["_applied"]}, t,
                      time.monotonic(), "ok", key="b"))

    write()
    topo.wait_ready(15)
    old = topo.primary()
    split = nemesis.isolate_primary()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        write()
        try:
            if topo.primary(unanimous=True) is not old:
                break
        except Exception:
            pass
        time.sleep(0.02)  # write pace during the split
    new = nemesis.wait_new_primary(old)
    split.heal()
    with new.admin() as admin:
        audit = lost_acknowledged_writes(ops, read_survivors(admin, store, ["b"]))
    return audit.count, len(ops)


def replica_delay(topo: Any, lag_ms: int) -> float:
    """Seconds from a write the primary acknowledged until every replica has it (under ``lag_ms`` if > 0)."""
    primary = topo.primary()
    replicas = [n for n in topo.nodes if n is not primary]
    fault = FaultController().sentinel(topo).replication_lag(lag_ms) if lag_ms else None
    key = f"d{uuid.uuid4().hex[:8]}"
    try:
        with primary.admin() as p:
            p.set(key, 1)
        t0 = time.monotonic()
        for r in replicas:
            with r.admin() as c:
                while c.get(key) is None:
                    if time.monotonic() - t0 > 15:
                        raise RuntimeError(f"{r.name} lacks {key} after 15 s")
                    time.sleep(0.001)  # poll pace of the replica read
        return time.monotonic() - t0
    finally:
        if fault is not None:
            fault.heal()


def migrate_time(cluster: Any) -> float:
    """Seconds of ``migrate_slot`` for a slot holding one key."""
    key = f"m{uuid.uuid4().hex[:8]}"
    cluster.cluster_client().set(key, 1)
    src = cluster.owner(key)
    dst = next(p for p in cluster.primaries() if p is not src)
    import redis.cluster

    t0 = time.monotonic()
    FaultController().cluster(cluster).migrate_slot(redis.cluster.key_slot(key.encode()), dst)
    return time.monotonic() - t0


def cluster_switch(cluster: Any) -> float:
    """Seconds from ``CLUSTER FAILOVER`` until a ``RedisCluster`` client's write lands on the promoted replica."""
    client = cluster.cluster_client(socket_timeout=0.5)
    client.set("k", 0)
    old = cluster.owner("k")
    new = cluster.replica_of(old)
    t0 = time.monotonic()
    with new.admin() as c:
        c.execute_command("CLUSTER", "FAILOVER")
    deadline = t0 + 15
    while time.monotonic() < deadline:
        try:
            v = client.incr("k")
            with new.admin() as c:  # the write landed on the promoted replica, and it is the primary
                if c.info("replication")["role"] == "master" and int(c.get("k") or -1) == v:
                    return time.monotonic() - t0
        except Exception:
            pass  # a redirection or a refused write during the switch: try again
        time.sleep(0.005)
    raise RuntimeError("cluster failover: the client did not reach the new primary within 15 s")


def sentinel_figures(env: Environment, runs: int) -> None:
    """Ready time, client switch after failover and kill, split-brain losses, replica delay."""
    med = statistics.median
    ready = []
    for _ in range(runs):
        t0 = time.monotonic()
        topo = env.launch_sentinel()
        ready.append(time.monotonic() - t0)
        topo.stop()
    print(f"Sentinel topology (1 primary, 2 replicas, 3 sentinels), median of {runs} runs")
    print(f"ready:                               {med(ready):6.2f} s  (min {min(ready):.2f}, max {max(ready):.2f})")
    topo = env.launch_sentinel()
    try:
        for fault in ("failover", "kill"):
            xs = [client_switch(topo, fault) for _ in range(runs)]
            print(f"client to the new primary, {fault:<8}:  {med(xs):6.2f} s  (min {min(xs):.2f}, max {max(xs):.2f})")
        for wait in (0, 1):
            rs = [split_brain_losses(topo, wait) for _ in range(runs)]
            lost = [r[0] for r in rs]
            print(f"lost acknowledged writes per split brain, {'WAIT 1' if wait else 'no WAIT'}: "
                  f"median {med(lost)} (runs: {lost}; acknowledged per run {[r[1] for r in rs]})")
        for lag in (0, 100):
            xs = [replica_delay(topo, lag) for _ in range(runs)]
            print(f"replica delay, replication_lag {lag:>3} ms: {med(xs) * 1000:6.1f} ms  "
                  f"(min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})")
    finally:
        topo.stop()


def cluster_figures(env: Environment, runs: int) -> None:
    """Ready time, client switch after a shard failover, migrate_slot time."""
    med = statistics.median
    cready, cswitch, cmigrate = [], [], []
    for _ in range(runs):
        t0 = time.monotonic()
        cluster = env.launch_cluster()
        cready.append(time.monotonic() - t0)
        try:
            cmigrate.append(migrate_time(cluster))
            cswitch.append(cluster_switch(cluster))
        finally:
            cluster.stop()
    print(f"cluster (3 shards, a replica each) ready: {med(cready):6.2f} s  (min {min(cready):.2f}, "
          f"max {max(cready):.2f})")
    print(f"cluster: a shard's failover until the client writes to the new primary: {med(cswitch):6.2f} s  "
          f"(min {min(cswitch):.2f}, max {max(cswitch):.2f})")
    print(f"cluster: migrate_slot (one key): {med(cmigrate):6.2f} s  (min {min(cmigrate):.2f}, "
          f"max {max(cmigrate):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=("sentinel", "cluster"), help="measure one topology (default: both)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs {args.runs}: expected a positive count")
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C: the topologies stop and the work directory goes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory() as tmp:
        env = Environment(Settings.defaults(), Path(tmp))
        try:
            env.toxiproxy()
            if args.only != "cluster":
                sentinel_figures(env, args.runs)
            if args.only != "sentinel":
                cluster_figures(env, args.runs)
        finally:
            env.stop()


if __name__ == "__main__":
    main()
