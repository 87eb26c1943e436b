"""The fault vocabulary: every fault kind a scenario may name, its family and its typed params.

One table: the scenario schema's ``kind`` enum, the loader's checks and the scenario runner all
derive from it, and each kind maps onto one :class:`~.controller.FaultController` method
(docs/scenarios.md, "Faults").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_cbchaos.faults.cpu import MAX_FOR_S, MAX_WORKERS
from pytest_cbchaos.params import Param, Params

HOST_TARGET = "host"  # the target of a host fault: this machine

_MS = "milliseconds"


def _for_s(value: Any) -> str | None:
    return None if 0 < value <= MAX_FOR_S else _FOR_S_EXPECTED


_FOR_S_EXPECTED = f"a finite number of seconds > 0 and <= {MAX_FOR_S:g}"


@dataclass(frozen=True)
class FaultKind:
    """``family``: what the fault's ``target`` names — a proxy, a process, a clock, the host or Redis."""

    name: str
    family: str
    params: Params = field(default_factory=dict)
    doc: str = ""


def _kinds(*kinds: FaultKind) -> dict[str, FaultKind]:
    return {k.name: k for k in kinds}


FAULT_KINDS: dict[str, FaultKind] = _kinds(
    # proxy faults (toxics on a fault proxy; toxiproxy's attribute names, except ``ms``). Names and types are
    # checked at load; bounds when applied (check_toxic_params), so a bad value is a failed fault in the audit.
    FaultKind("latency", "proxy", {"ms": Param(int, 0, f"added delay, {_MS}"),
                                   "jitter": Param(int, 0, f"random +/- delay, {_MS}")}),
    FaultKind("bandwidth", "proxy", {"rate": Param(int, doc="KB/s", required=True)}),
    FaultKind("slow_close", "proxy", {"delay": Param(int, doc=f"close delay, {_MS}", required=True)}),
    FaultKind("timeout", "proxy", {"ms": Param(int, 0, f"close after, {_MS} (0: never, data dropped)")}),
    FaultKind("reset_peer", "proxy", {"timeout": Param(int, 0, f"reset after, {_MS}")}),
    FaultKind("slicer", "proxy", {"average_size": Param(int, doc="bytes", required=True),
                                  "size_variation": Param(int, 0, "bytes"),
                                  "delay": Param(int, 0, "microseconds between slices")}),
    FaultKind("limit_data", "proxy", {"bytes": Param(int, doc="close after this many bytes", required=True)}),
    FaultKind("partition", "proxy", doc="one direction blackholed"),
    FaultKind("down", "proxy", doc="proxy disabled: connects refused, connections closed"),
    # process faults
    FaultKind("pause", "process", doc="SIGSTOP, SIGCONT when healed"),
    FaultKind("kill", "process", doc="SIGKILL; with `for`: restarted on the same port"),
    FaultKind("restart", "process", {"graceful": Param(bool, False, "SIGTERM instead of SIGKILL")}),
    # clock faults
    FaultKind("clock_skew", "clock", {"offset_s": Param(float, 0.0, "seconds added to wall time"),
                                      "drift_ppm": Param(float, 0.0, "drift, parts per million")}),
    # host faults
    FaultKind("cpu_stress", "host", {
        "workers": Param(int, 1, "busy processes", minimum=1, maximum=MAX_WORKERS),
        "for_s": Param(float, None, "seconds (default: until healed)", nullable=True, describe=_FOR_S_EXPECTED,
                       check=_for_s)}),
    # replicated Redis (target "redis" of a topology with redis.sentinel; docs/redis-topologies.md#the-nemesis)
    FaultKind("failover", "sentinel", doc="SENTINEL FAILOVER; done once the old primary is a replica"),
    # replicated Redis, Sentinel or Cluster (target "redis")
    FaultKind("isolate_primary", "replicated", {
        "promote_after_s": Param(float, 0.0, "cluster: seconds from the cut to the replica's promotion (the "
                                              "isolated primary's writes meanwhile are lost); Sentinel: 0 (the "
                                              "sentinels decide)", minimum=0)},
              doc="primary cut from its replicas (and sentinels), clients still reach it; on a cluster its replica is "
                  "then promoted (split brain); healed: demoted if replaced"),
    FaultKind("replication_lag", "replicated", {"ms": Param(int, doc=f"delay of every primary's replication stream, {_MS}",
                                                            minimum=1, required=True)},
              doc="latency toxic on the primaries' replication direction; healed: toxic removed"),
    # Redis Cluster (target "redis" of a topology with redis.cluster; docs/redis-topologies.md#redis-cluster)
    FaultKind("migrate_slot", "cluster", {
        "slot": Param(int, None, "slot to move (default: the slot of the workload's key)", nullable=True, minimum=0,
                      maximum=16383),
        "to": Param(str, None, "node name of the new owner (default: the next primary)", nullable=True)},
              doc="CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE of its keys, SETSLOT NODE; done once every primary agrees"),
    # Redis actions (through the target's admin client)
    FaultKind("flushall", "redis"),
    FaultKind("evict", "redis", {"pattern": Param(str, "*", "keys matching this glob are deleted"),
                                 "max_keys": Param(int, 10_000, "at most this many", minimum=1)}),
    FaultKind("script_flush", "redis"),
    FaultKind("client_kill", "redis", doc="CLIENT KILL TYPE normal"),
)


def kinds_of(family: str) -> tuple[str, ...]:
    return tuple(name for name, k in FAULT_KINDS.items() if k.family == family)
