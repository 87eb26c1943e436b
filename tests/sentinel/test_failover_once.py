"""One ``failover()`` is one switch of primary (docs/redis-topologies.md#the-nemesis).

* It starts a failover again only when the attempt was aborted: an attempt whose wait ran out while the
  sentinels were still agreeing must not be started again, which would fail over the freshly promoted replica
  as well. Both cases are forced: the wait is made to run out at a chosen point, the topology is real.
* The other sentinels give the leader time to confirm its promotion before they turn the promoted replica
  back (the timer relation below); otherwise they undo the failover and then fail over on their own."""

from __future__ import annotations

from pytest_cbchaos.faults.controller import FaultController
from pytest_cbchaos.servers.sentinel import FAILOVER_INFO_PERIOD_MS, SENTINEL_DEBUG, TopologyNotReady


def _switches(faults: FaultController) -> list[tuple[str, str | None]]:
    faults.stop_watching()
    return [(p["node"], p.get("previous")) for p in faults.journal.lane.primaries()]


def test_a_slow_switch_is_waited_for_not_started_again(cbchaos_redis_sentinel, monkeypatch) -> None:
    topo = cbchaos_redis_sentinel
    faults = FaultController()
    nemesis = faults.sentinel(topo)
    old = topo.primary()
    real_wait = nemesis.wait_new_primary
    calls: list[str] = []

    def wait_runs_out_once_switched(o, timeout=None):
        calls.append("wait")
        if len(calls) == 1:  # the attempt's wait runs out just as the switch completes
            real_wait(o, timeout)
            raise TopologyNotReady("forced: the attempt's wait ran out")
        return real_wait(o, timeout)

    monkeypatch.setattr(nemesis, "wait_new_primary", wait_runs_out_once_switched)
    window = nemesis.failover()
    new = topo.primary()
    assert not [s.name for s in topo.sentinels if topo.failover_in_progress(s)]  # no second failover started
    assert calls == ["wait", "wait"]
    assert window.params["new_primary"] == new.name != old.name
    assert _switches(faults) == [(old.name, None), (new.name, old.name)]


def test_an_aborted_attempt_is_started_again(cbchaos_redis_sentinel, monkeypatch) -> None:
    topo = cbchaos_redis_sentinel
    faults = FaultController()
    nemesis = faults.sentinel(topo)
    old = topo.primary()
    real_start, real_wait = nemesis._start_failover, nemesis.wait_new_primary
    starts: list[str] = []

    def first_attempt_aborts():
        starts.append("start")
        return topo.sentinels[0] if len(starts) == 1 else real_start()  # the first never got under way

    def first_wait_runs_out(o, timeout=None):
        if len(starts) == 1:
            raise TopologyNotReady("forced: nothing happened")
        return real_wait(o, timeout)

    monkeypatch.setattr(nemesis, "_start_failover", first_attempt_aborts)
    monkeypatch.setattr(nemesis, "wait_new_primary", first_wait_runs_out)
    window = nemesis.failover()
    new = topo.primary()
    assert starts == ["start", "start"]
    assert _switches(faults) == [(old.name, None), (new.name, old.name)]
    assert window.params["new_primary"] == new.name


def test_sentinels_wait_longer_than_the_leader_can_need_to_confirm_a_promotion() -> None:
    undo_after_ms = 4 * SENTINEL_DEBUG["publish-period"]  # a replica claiming master is turned back after this
    assert undo_after_ms >= 2 * FAILOVER_INFO_PERIOD_MS  # the leader's INFO poll of it, with 1 s to spare
