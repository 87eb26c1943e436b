"""Split brain on a real Redis Cluster (docs/redis-topologies.md#cluster-split-brain): breaker writes the
isolated primary acknowledged (no WAIT) are gone once its replica was promoted and it is a replica again; the
same judge as for Sentinel (breaker/lost_writes.py) finds the history illegal and names exactly those writes;
the report's topology lane shows the promotion inside the isolation window."""

from __future__ import annotations

import uuid

from breaker_history import BACKEND, Recorded
from pytest_cbchaos.breaker import RedisStore
from pytest_cbchaos.breaker.lost_writes import judge, read_survivors
from pytest_cbchaos.history.recorder import Recorder
from pytest_cbchaos.report.collect import base_record


def test_cluster_split_brain_loses_acknowledged_breaker_writes(cbchaos_redis_cluster, cbchaos_faults,
                                                                request) -> None:
    topo = cbchaos_redis_cluster
    nemesis = cbchaos_faults.cluster(topo)
    recorder = Recorder(1)
    store = RedisStore(topo.cluster_client(), key_prefix=f"csb{uuid.uuid4().hex[:8]}")
    s = Recorded(store, recorder)
    key = store.key(BACKEND)
    s.failure()  # replicated before the split: survives
    topo.wait_ready(10)
    old = topo.owner(key)
    split = nemesis.isolate_primary(key)
    replica = topo.replica_of(old)
    lost_ids = []
    for _ in range(2):  # acknowledged by the isolated primary; its replica cannot have them (peer proxy down)
        s.failure()
        lost_ids.append(s.last_op_id)
    with old.admin() as c:
        assert int(c.hget(key, "failure_count")) == 3
    new = nemesis.promote_replica(split)
    assert new is replica and split.window.params["new_primary"] == new.name
    split.heal()
    assert split.window.params["demoted"] is True and old.role_now() == "slave"
    after = s.state()  # the client follows MOVED to the promoted replica
    assert after["state"] == "closed" and after["failure_count"] == 1, after
    recorder.close()
    with new.admin() as admin:
        verdict = judge(recorder.history(), read_survivors(admin, store, [BACKEND]))
    assert verdict.verdict == "illegal" and verdict.explained_by_lost_writes, verdict.describe()
    assert verdict.lost.count == 2 and not verdict.lost.undetermined
    assert [o.input["op_id"] for o in verdict.lost.lost] == lost_ids
    cbchaos_faults.stop_watching()
    lane = base_record(request.node, journal=cbchaos_faults.journal)["topology"]
    (w,) = lane["windows"]
    moved = [p for p in lane["primaries"] if p["node"] == new.name]
    assert lane["kind"] == "cluster" and len(moved) == 1 and moved[0]["previous"] == old.name
    assert moved[0]["via"] == "ROLE" and w["start_ms"] <= moved[0]["t_ms"]
    initial = lane["primaries"][:topo.shards]  # each shard's primary when the nemesis was created
    assert old.name in {p["node"] for p in initial} and all(p["previous"] is None for p in initial)
    assert len({p["shard"] for p in initial}) == topo.shards and lane["primaries"][topo.shards:] == moved
