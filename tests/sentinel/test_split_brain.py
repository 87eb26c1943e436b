"""Split brain on a real Sentinel topology (docs/redis-topologies.md#what-is-judged): breaker writes acknowledged
by an isolated primary are gone once it is demoted; the breaker-store linearizability check (model unchanged)
finds the history illegal and the audit counts and names the lost acknowledged writes (the same judge after a
plain failover finds nothing: tests/sentinel/test_store_failover.py)."""

from __future__ import annotations

from breaker_history import BACKEND, judged_split_brain, replicated_first_failure, two_failures


def test_split_brain_loses_acknowledged_breaker_writes_and_the_kit_says_which(cbchaos_redis_sentinel,
                                                                              cbchaos_faults) -> None:
    topo = cbchaos_redis_sentinel
    nemesis = cbchaos_faults.sentinel(topo)
    recorder, store, s = replicated_first_failure(topo, topo.master_client(), "sb")  # survives the split
    old = topo.primary()
    split = nemesis.isolate_primary()
    # the client's pooled connection still reaches the isolated primary: these two are acknowledged there
    lost_ids = two_failures(s)
    assert store.get_state(BACKEND)["state"] == "open"
    new = nemesis.wait_new_primary(old)
    split.heal()  # the old primary comes back and is demoted: its window's writes are gone
    assert split.window.params == {"node": old.name, "new_primary": new.name, "demoted": True}
    assert old.role_now() == "slave"
    after = s.state()
    assert after["state"] == "closed" and after["failure_count"] == 1, after
    verdict = judged_split_brain(recorder, new, store, lost_ids)
    assert verdict.describe().startswith("linearizability: illegal caused by lost acknowledged writes; "
                                         "lost acknowledged writes: 2 (record_failure[b] op_id=")
