"""Split brain on a real Redis Cluster (docs/redis-topologies.md#cluster-split-brain): breaker writes the
isolated primary acknowledged (no WAIT) are gone once its replica was promoted and it is a replica again; the
same judge as for Sentinel (breaker/lost_writes.py) finds the history illegal and names exactly those writes;
the report's topology lane shows the promotion inside the isolation window."""

from __future__ import annotations

from breaker_history import BACKEND, judged_split_brain, replicated_first_failure, two_failures
from pytest_cbchaos.report.collect import base_record


def test_cluster_split_brain_loses_acknowledged_breaker_writes(cbchaos_redis_cluster, cbchaos_faults,
                                                                request) -> None:
    topo = cbchaos_redis_cluster
    nemesis = cbchaos_faults.cluster(topo)
    recorder, store, s = replicated_first_failure(topo, topo.cluster_client(), "csb")  # survives the split
    key = store.key(BACKEND)
    old = topo.owner(key)
    split = nemesis.isolate_primary(key)
    replica = topo.replica_of(old)
    lost_ids = two_failures(s)  # acknowledged by the isolated primary; its replica cannot have them (peer proxy down)
    with old.admin() as c:
        assert int(c.hget(key, "failure_count")) == 3
    new = nemesis.promote_replica(split)
    assert new is replica and split.window.params["new_primary"] == new.name
    split.heal()
    assert split.window.params["demoted"] is True and old.role_now() == "slave"
    after = s.state()  # the client follows MOVED to the promoted replica
    assert after["state"] == "closed" and after["failure_count"] == 1, after
    judged_split_brain(recorder, new, store, lost_ids)
    cbchaos_faults.stop_watching()
    lane = base_record(request.node, journal=cbchaos_faults.journal)["topology"]
    (w,) = lane["windows"]
    moved = [p for p in lane["primaries"] if p["node"] == new.name]
    assert lane["kind"] == "cluster" and len(moved) == 1 and moved[0]["previous"] == old.name
    assert moved[0]["via"] == "ROLE" and w["start_ms"] <= moved[0]["t_ms"]
    initial = lane["primaries"][:topo.shards]  # each shard's primary when the nemesis was created
    assert old.name in {p["node"] for p in initial} and all(p["previous"] is None for p in initial)
    assert len({p["shard"] for p in initial}) == topo.shards and lane["primaries"][topo.shards:] == moved
