"""Split brain on a real Sentinel topology (docs/redis-topologies.md#what-is-judged): breaker writes acknowledged
by an isolated primary are gone once it is demoted; the breaker-store linearizability check (model unchanged)
finds the history illegal and the audit counts and names the lost acknowledged writes (the same judge after a
plain failover finds nothing: tests/sentinel/test_store_failover.py)."""

from __future__ import annotations

import uuid

from breaker_history import BACKEND, Recorded
from pytest_cbchaos.breaker import RedisStore
from pytest_cbchaos.breaker.lost_writes import judge, read_survivors
from pytest_cbchaos.history.recorder import Recorder


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
