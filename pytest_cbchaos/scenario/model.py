"""Typed view of a validated scenario file (see ``schema.json`` and docs/scenarios.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_cbchaos.faults.kinds import FAULT_KINDS, HOST_TARGET, kinds_of  # noqa: F401 (HOST_TARGET re-exported)

PROXY_FAULTS = kinds_of("proxy")
PROCESS_FAULTS = kinds_of("process")
CLOCK_FAULTS = kinds_of("clock")
HOST_FAULTS = kinds_of("host")  # on target "host": this machine
REDIS_ACTIONS = kinds_of("redis")
SENTINEL_FAULTS = kinds_of("sentinel")  # on target "redis" of a Sentinel topology
REPLICATED_FAULTS = kinds_of("replicated")  # on target "redis" of a Sentinel or Cluster topology
CLUSTER_FAULTS = kinds_of("cluster")  # on target "redis" of a Cluster topology


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    target: str
    at: float = 0.0
    duration: float | None = None  # "for"
    every: float | None = None
    times: int | None = None
    stream: str = "downstream"
    toxicity: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    line: int | None = None

    @property
    def family(self) -> str:
        return FAULT_KINDS[self.kind].family


@dataclass(frozen=True)
class CheckSpec:
    kind: str  # linearizability | invariant | recovery
    name: str  # model name, invariant id or recovery name
    params: dict[str, Any] = field(default_factory=dict)
    line: int | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Topology:
    redis: dict[str, Any] | None = None
    opencode: dict[str, Any] | None = None
    proxies: tuple[str, ...] = ()
    workers: int = 1
    worker_kind: str = "thread"


@dataclass(frozen=True)
class Workload:
    duration_s: float = 2.0
    ops_per_worker: int = 200
    interval_ms: float = 5.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Budgets:
    wall_s: float = 10.0
    check_timeout_s: float = 5.0
    max_ops: int = 5000


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    target: str
    description: str = ""
    markers: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    covers: tuple[str, ...] = ()
    seed: int | None = None
    topology: Topology = field(default_factory=Topology)
    workload: Workload = field(default_factory=Workload)
    faults: tuple[FaultSpec, ...] = ()
    checks: tuple[CheckSpec, ...] = ()
    budgets: Budgets = field(default_factory=Budgets)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
