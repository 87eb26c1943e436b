"""``migrate_slot`` under load (docs/redis-topologies.md#redis-cluster): two workers keep making breaker
decisions with ``RedisStore`` on ``RedisCluster`` clients while the slot of their breaker key moves to another
primary; the decisions continue, the clients were redirected (``ASK`` during the migration, ``MOVED``
after it, counted by the source node's ``INFO errorstats``), the slot's owner changed and the history is
linearizable with no lost acknowledged write. A migration that never moves the slot fails the owner check."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis.cluster

from pytest_cbchaos.breaker import RedisStore
from pytest_cbchaos.breaker.lost_writes import judge, read_survivors
from pytest_cbchaos.history.recorder import Recorder
from pytest_cbchaos.scenario.targets.breaker_store import observed

BACKEND = "b"
WORKERS = 2
MAX_OPS = 150  # per worker: the load is bounded in count as well as by the test's stop
STEP_S = 10.0  # bound of each wait for the load to progress (a stalled load fails the test)


class Load:
    """``WORKERS`` threads making breaker decisions (gate, then record or release), each op recorded.

    The load is paced by the test: it makes ops only while fewer have completed than ``progress`` asked for,
    so a slow migration (a busy machine) cannot use up the count bound before the phase that needs the ops."""

    def __init__(self, topo, prefix: str) -> None:
        self.recorder = Recorder(WORKERS)
        self.stores = [RedisStore(topo.cluster_client(), key_prefix=prefix) for _ in range(WORKERS)]
        self.done = 0  # completed ops (ok or not)
        self.allowed = 0  # ops the test asked for so far (``progress``)
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._work, args=(w,), daemon=True) for w in range(WORKERS)]

    def _op(self, wid: int, f: str, call, **inp):
        op_id = uuid.uuid4().hex
        h = self.recorder.invoke(wid, f, {"op_id": op_id, **inp, "now_min": time.time()}, key=BACKEND)
        try:
            reply = call(op_id)
        except Exception as exc:
            h.exception(exc)
            self.errors.append(f"{f}: {type(exc).__name__}: {exc}")
            reply = None
        else:
            h.ok(observed(f, reply))
        with self.cond:
            self.done += 1
            self.cond.notify_all()
        return reply

    def _work(self, wid: int) -> None:
        store, n = self.stores[wid], 0
        while not self.stop.is_set() and n < MAX_OPS:
            n += 2
            with self.cond:
                if not self.cond.wait_for(lambda: self.stop.is_set() or self.done < self.allowed, STEP_S):
                    continue
            if self.stop.is_set():
                return
            claim = self._op(wid, "gate", lambda i: store.try_transition_and_claim_probe(
                BACKEND, None, 0.05, lease_seconds=1.0, op_id=i), lease_seconds=1.0)
            if claim is None or not claim.admitted:
                continue
            if claim.won:
                self._op(wid, "release_probe", lambda i: store.release_probe(
                    BACKEND, claim.token, "success", recovery_timeout=0.05, op_id=i), token=claim.token,
                    outcome="success", recovery_timeout=0.05)
            elif n % 3:
                self._op(wid, "record_failure", lambda i: store.atomic_record_failure(BACKEND, 3, 0.05, op_id=i),
                         failure_threshold=3, recovery_timeout=0.05)
            else:
                self._op(wid, "record_success", lambda i: store.atomic_record_success(BACKEND, op_id=i))

    def progress(self, ops: int) -> None:
        """Until ``ops`` more ops completed (bounded: a load that stalls fails here)."""
        with self.cond:
            target = self.allowed = self.done + ops
            self.cond.notify_all()
            assert self.cond.wait_for(lambda: self.done >= target or not any(t.is_alive() for t in self.threads),
                                      STEP_S), f"the load stalled at {self.done} ops"
        assert self.done >= target, f"the load ended ({self.done} ops, {MAX_OPS} each at most) before {ops} more"

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        with self.cond:
            self.cond.notify_all()
        for t in self.threads:
            t.join(STEP_S)
        self.recorder.close()


def assert_moved(topo, key: str, src, dst, window) -> None:
    """The slot's owner changed from ``src`` to ``dst`` and the key moved with it."""
    assert window.params["from"] == src.name and window.params["to"] == dst.name and window.params["keys_moved"] >= 1
    assert topo.owner(key) is dst, f"slot of {key!r} still served by {topo.owner(key).name}"
    slot = window.params["slot"]
    with src.admin() as s, dst.admin() as d:  # a node answers MOVED for a key of a slot it does not serve
        assert s.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        assert d.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) >= 1


def errorstats(node) -> dict[str, int]:
    with node.admin() as c:
        info = c.info("errorstats")
    return {k.removeprefix("errorstat_"): v["count"] for k, v in info.items()}


def test_decisions_continue_across_a_slot_migration(cbchaos_redis_cluster, cbchaos_faults) -> None:
    topo = cbchaos_redis_cluster
    prefix = f"mig{uuid.uuid4().hex[:8]}"
    key = RedisStore(topo.nodes[0].admin(), key_prefix=prefix).key(BACKEND)
    slot = redis.cluster.key_slot(key.encode())
    src = topo.owner(key)
    dst = next(p for p in topo.primaries() if p is not src)
    for n in (src, dst):
        with n.admin() as c:
            c.config_resetstat()
    nemesis = cbchaos_faults.cluster(topo)
    with Load(topo, prefix) as load:
        load.progress(6)  # the key exists on the source
        window = nemesis.migrate_slot(slot, dst.name, between=lambda: load.progress(4))  # ops while ASK answers
        load.progress(6)  # ... and after the ownership moved (MOVED to the clients' stale slot maps)
    assert_moved(topo, key, src, dst, window)
    redirected = errorstats(src)
    assert redirected.get("ASK", 0) >= 1 and redirected.get("MOVED", 0) >= 1, redirected
    assert not load.errors, load.errors[:5]
    with dst.admin() as admin:
        verdict = judge(load.recorder.history(), read_survivors(admin, load.stores[0], [BACKEND]))
    assert verdict.verdict == "ok" and verdict.lost.count == 0, verdict.describe()
    assert [w.kind for w in cbchaos_faults.journal.windows()] == ["migrate_slot"]
    print(f"\nmigrate_slot: {load.done} ops, {window.params['keys_moved']} keys moved, redirections {redirected}")


def test_a_migration_that_never_moves_the_slot_is_caught(cbchaos_redis_cluster, cbchaos_faults) -> None:
    topo = cbchaos_redis_cluster
    key = f"mut{uuid.uuid4().hex[:8]}"
    src = topo.owner(key)
    dst = next(p for p in topo.primaries() if p is not src)
    with src.admin() as c:
        c.set(key, 1)
    journal = cbchaos_faults.journal
    window = journal.begin("migrate_slot", src.name, {"slot": redis.cluster.key_slot(key.encode()), "from": src.name,
                                                      "to": dst.name, "keys_moved": 1})
    journal.started(window)  # the mutant: a journaled window, no protocol run
    journal.end(window)
    with pytest.raises(AssertionError):
        assert_moved(topo, key, src, dst, window)
