"""Split brain on a real Sentinel topology (docs/redis-topologies.md#what-is-judged): breaker writes acknowledged
by an isolated primary are gone once it is demoted; the breaker-store linearizability check (model unchanged)
finds the history illegal and the audit counts and names the lost acknowledged writes. The same judge on a
history without a split brain finds nothing (no false violation)."""

from __future__ import annotations

import uuid
from typing import Any, Callable

from pytest_cbchaos.breaker import RedisStore
from pytest_cbchaos.breaker.lost_writes import judge, read_survivors
from pytest_cbchaos.history.recorder import Recorder
from pytest_cbchaos.scenario.targets.breaker_store import observed

BACKEND = "b"


class Recorded:
    """A store whose ops are recorded for the breaker-store model (op ids passed, replies observed)."""

    def __init__(self, store: RedisStore, recorder: Recorder) -> None:
        self.store, self.rec = store, recorder
        self.last_op_id = ""

    def _op(self, f: str, call: Callable[..., Any], **inp: Any) -> Any:
        import time

        op_id = self.last_op_id = uuid.uuid4().hex
        h = self.rec.invoke(0, f, {"op_id": op_id, **inp, "now_min": time.time()}, key=BACKEND)
        try:
            reply = call(op_id)
        except Exception as exc:
            h.exception(exc)
            raise
        h.ok(observed(f, reply))
        return reply

    def failure(self) -> dict:
        return self._op("record_failure", lambda i: self.store.atomic_record_failure(BACKEND, 3, 60, op_id=i),
                        failure_threshold=3, recovery_timeout=60)

    def state(self) -> dict:
        h = self.rec.invoke(0, "get_state", {}, key=BACKEND)
        st = self.store.get_state(BACKEND)
        h.ok(observed("get_state", st))
        return st


def test_split_brain_loses_acknowledged_breaker_writes_and_the_kit_says_which(cbchaos_redis_sentinel,
                                                                              cbchaos_faults) -> None:
    topo = cbchaos_redis_sentinel
    nemesis = cbchaos_faults.sentinel(topo)
    recorder = Recorder(1)
    store = RedisStore(topo.master_client(), key_prefix=f"sb{uuid.uuid4().hex[:8]}")
    s = Recorded(store, recorder)
    s.failure()  # replicated before the split: survives
    topo.wait_ready(10)
    old = topo.primary()
    split = nemesis.isolate_primary()
    # the client's pooled connection still reaches the isolated primary: these two are acknowledged there
    lost_ids = []
    for _ in range(2):
        s.failure()
        lost_ids.append(s.last_op_id)
    assert store.get_state(BACKEND)["state"] == "open"
    new = nemesis.wait_new_primary(old)
    split.heal()  # the old primary comes back and is demoted: its window's writes are gone
    assert split.window.params == {"node": old.name, "new_primary": new.name, "demoted": True}
    assert old.role_now() == "slave"
    after = s.state()
    assert after["state"] == "closed" and after["failure_count"] == 1, after
    recorder.close()
    with new.admin() as admin:
        survivors = read_survivors(admin, store, [BACKEND])
    verdict = judge(recorder.history(), survivors)
    assert verdict.verdict == "illegal" and verdict.explained_by_lost_writes
    assert verdict.lost.count == 2 and not verdict.lost.undetermined
    assert [o.input["op_id"] for o in verdict.lost.lost] == lost_ids
    assert verdict.describe().startswith("linearizability: illegal caused by lost acknowledged writes; "
                                         "lost acknowledged writes: 2 (record_failure[b] op_id=")


def test_failover_with_replicated_writes_is_judged_linearizable_with_nothing_lost(cbchaos_redis_sentinel,
                                                                                  cbchaos_faults) -> None:
    topo = cbchaos_redis_sentinel
    recorder = Recorder(1)
    store = RedisStore(topo.master_client(), key_prefix=f"fo{uuid.uuid4().hex[:8]}", wait_replicas=2,
                       wait_timeout_ms=2000)
    s = Recorded(store, recorder)
    for _ in range(2):
        assert s.failure()["_replicas_acked"] == 2
    cbchaos_faults.sentinel(topo).failover()
    s.failure()
    assert s.state()["state"] == "open"
    recorder.close()
    with topo.primary().admin() as admin:
        verdict = judge(recorder.history(), read_survivors(admin, store, [BACKEND]))
    assert verdict.verdict == "ok" and verdict.lost.count == 0 and verdict.lost.checked == 3, verdict.describe()
