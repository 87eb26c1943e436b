"""The ``isolate_primary`` fault kind on either replicated topology, and the ``loses-writes`` expectation
(docs/redis-topologies.md#cluster-split-brain). The nemeses are fakes: their live behaviour is
tests/sentinel/test_split_brain.py and test_cluster_split_brain.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pytest_cbchaos.breaker.lost_writes import LostWrites
from pytest_cbchaos.faults.cluster import ClusterNemesis
from pytest_cbchaos.faults.controller import FaultController, FaultParameterError
from pytest_cbchaos.history.ops import Op
from pytest_cbchaos.scenario.model import FaultSpec
from pytest_cbchaos.scenario.results import Observations
from pytest_cbchaos.scenario.runner import FaultScheduler
from pytest_cbchaos.scenario.targets.breaker_store import BreakerStoreTarget


class Nemesis:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def isolate_primary(self, *key: str, **kw: Any) -> Any:
        self.calls.append(("isolate_primary", key, kw))
        return "split"


def apply(state: dict[str, Any], nemesis: Nemesis, **params: Any) -> Any:
    faults = SimpleNamespace(cluster=lambda topo: nemesis, sentinel=lambda topo: nemesis)
    ctx = SimpleNamespace(scenario=SimpleNamespace(name="s", faults=[], workload=SimpleNamespace(duration_s=1.0)),
                          state=state, faults=faults)
    return FaultScheduler(ctx)._apply(FaultSpec("isolate_primary", "redis", params=params))


def test_on_a_cluster_the_primary_of_the_key_is_isolated_then_its_replica_promoted() -> None:
    n = Nemesis()
    assert apply({"cluster": object(), "cluster_key": "cb:svc"}, n, promote_after_s=0.3) == "split"
    assert n.calls == [("isolate_primary", ("cb:svc",), {"promote_after_s": 0.3})]


def test_under_sentinel_the_sentinels_promote() -> None:
    n = Nemesis()
    apply({"sentinel": object()}, n)
    assert n.calls == [("isolate_primary", (), {})]
    with pytest.raises(FaultParameterError, match="promote_after_s=0.5 needs a cluster topology"):
        apply({"sentinel": object()}, n, promote_after_s=0.5)
    assert len(n.calls) == 1


class Node:
    """A cluster node as the nemesis sees it: proxies that record their state, a role, an admin link."""

    def __init__(self, name: str, log: list[str], admin_error: Exception | None = None) -> None:
        self.name, self.log, self.admin_error = name, log, admin_error
        self.peer = SimpleNamespace(disable=lambda: log.append(f"{name}.peer down"),
                                    enable=lambda: log.append(f"{name}.peer up"))
        self.bus = SimpleNamespace(disable=lambda: log.append(f"{name}.bus down"),
                                   enable=lambda: log.append(f"{name}.bus up"))

    def role_now(self) -> str:
        return "slave" if self.name == "replica" else "master"

    def admin(self) -> Any:
        raise self.admin_error or AssertionError("unexpected admin link")


def test_a_promotion_that_fails_reconnects_the_primary_and_raises() -> None:
    log: list[str] = []
    old, replica = Node("old", log), Node("replica", log, admin_error=ConnectionError("replica unreachable"))
    topo = SimpleNamespace(owner=lambda key: old, replica_of=lambda n: replica, wait_ready=lambda t: log.append("ready"),
                           servers=lambda: [old, replica])
    controller = FaultController()
    with pytest.raises(ConnectionError):
        ClusterNemesis(controller, topo).isolate_primary("k", promote_after_s=0)
    assert log == ["old.peer down", "old.bus down", "old.peer up", "old.bus up", "ready"]
    (w,) = controller.journal.windows()
    assert w.kind == "isolate_primary" and w.end_ns is not None


def lost(n: int) -> Observations:
    ops = [Op(i, 0, "record_failure", {"op_id": f"w{i}"}, {"applied": True}, i, i + 0.5, "ok") for i in range(n)]
    return Observations(metrics={"lost_writes": LostWrites(lost=ops, checked=5)})


def test_loses_writes_counts_and_names_the_lost_writes() -> None:
    r = BreakerStoreTarget().check_loses_writes(lost(2), None)
    assert r.verdict == "ok" and r.measured["count"] == 2 and [o["op_id"] for o in r.measured["ops"]] == ["w0", "w1"]


def test_a_split_brain_that_lost_nothing_is_a_violation() -> None:
    r = BreakerStoreTarget().check_loses_writes(lost(0), None)
    assert r.verdict == "violated" and "no acknowledged write was lost (5 checked)" in r.detail
    assert BreakerStoreTarget().check_no_lost_writes(lost(0), None).verdict == "ok"
