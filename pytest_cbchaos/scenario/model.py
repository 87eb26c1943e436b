"""Typed view of a validated scenario file (see ``schema.json`` and docs/scenarios.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROXY_FAULTS = ("latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data",
                "partition", "down")
PROCESS_FAULTS = ("pause", "kill", "restart")
CLOCK_FAULTS = ("clock_skew",)
HOST_FAULTS = ("cpu_stress",)  # on target "host": this machine
HOST_TARGET = "host"
REDIS_ACTIONS = ("flushall", "evict", "script_flush", "client_kill")


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
        if self.kind in PROXY_FAULTS:
            return "proxy"
        if self.kind in PROCESS_FAULTS:
            return "process"
        if self.kind in CLOCK_FAULTS:
            return "clock"
        if self.kind in HOST_FAULTS:
            return "host"
        return "redis"


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
