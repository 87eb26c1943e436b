"""Registry of scenario targets: how to build a system from a topology, run a bounded workload,
and check its observations.

Built-in targets live in ``targets/<name>.py`` and import their system lazily, so a target whose
dependency is missing *skips with a reason* instead of breaking collection. Users add targets by
protocol: ``target: "mypkg.mymodule:MyTarget"`` (a :class:`Target` subclass or instance; the
scenario file's directory is importable).
"""

from __future__ import annotations

import importlib
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pytest_cbchaos.env.environment import Unavailable

if TYPE_CHECKING:
    from pytest_cbchaos.scenario.model import CheckSpec, Topology
    from pytest_cbchaos.scenario.runner import RunContext

BUILTIN = {
    "breaker-store": "pytest_cbchaos.scenario.targets.breaker_store:BreakerStoreTarget",
    "recovery": "pytest_cbchaos.scenario.targets.recovery:RecoveryTarget",
    "stream": "pytest_cbchaos.scenario.targets.stream:StreamTarget",
    "gateway": "pytest_cbchaos.scenario.targets.gateway:GatewayTarget",
}


class TargetNotFound(LookupError):
    def __init__(self, message: str, expected: str) -> None:
        super().__init__(message)
        self.expected = expected


# The target's system (or a server it needs) is not installed: the scenario is skipped (failed when
# ``required``); the environment raises the same exception for a server it cannot start.
TargetUnavailable = Unavailable


@dataclass
class Observations:
    """What a workload saw. Times are ms since the workload started (the report's time axis)."""

    history: list[dict[str, Any]] = field(default_factory=list)       # Jepsen-shaped op events
    latencies: list[dict[str, Any]] = field(default_factory=list)     # {t_ms, worker, ms, ok}
    transitions: list[dict[str, Any]] = field(default_factory=list)   # {t_ms, worker, from, to}
    recoveries: dict[str, float | None] = field(default_factory=dict)  # name -> seconds (None: never)
    metrics: dict[str, Any] = field(default_factory=dict)
    probes: list[dict[str, Any]] = field(default_factory=list)        # {id, value, unit, note}
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str, item: Any) -> None:
        with self._lock:
            getattr(self, kind).append(item)

    def ops_observed(self) -> int:
        """Operations the workload completed or attempted: ``metrics["ops_observed"]`` when a target
        counts them itself, else the larger of latency samples and history invocations."""
        if self.metrics.get("ops_observed") is not None:
            return int(self.metrics["ops_observed"])
        invokes = sum(1 for e in self.history if e.get("type") == "invoke")
        return max(len(self.latencies), invokes)


@dataclass
class CheckResult:
    verdict: str  # "ok" | "violated" | "unknown" | "skipped"
    detail: str = ""
    counterexample: Any = None
    measured: dict[str, Any] = field(default_factory=dict)
    enforced: bool = True  # False: measure-and-report (M) — reported, never fails the run

    @property
    def failed(self) -> bool:
        return self.enforced and self.verdict in ("violated", "unknown")


class Target:
    """Base class: subclasses set the class attributes and implement :meth:`run`."""

    name: str = "target"
    description: str = ""
    requires: tuple[str, ...] = ()          # importable modules the target needs
    invariants: dict[str, str] = {}         # id -> one-line description
    measured: frozenset[str] = frozenset()  # invariant ids that are measure-and-report (M)
    default_proxies: tuple[str, ...] = ()
    default_model: str = "register"

    def processes(self, topology: "Topology") -> list[str]:
        """Names a process fault may target."""
        names = [f"worker-{i}" for i in range(topology.workers)]
        if topology.redis is not None:
            names.append("redis")
        return names

    def unavailable(self, scenario: Any = None, env: Any = None) -> str | None:
        """A skip reason when a required module is missing (checked before any server starts); ``env`` is the
        :class:`~pytest_cbchaos.env.Environment`, whose settings (e.g. the opencode binary) a target may need to decide."""
        for mod in self.required_modules(scenario):
            try:
                importlib.import_module(mod)
            except Exception as exc:  # ImportError, or a half-written dependency
                return f"target {self.name!r} needs {mod} ({type(exc).__name__}: {exc})"
        return None

    def topology_error(self, topology: Any) -> tuple[tuple[str, ...], Any, str] | None:
        """(key path in the scenario, value, expected) when the topology's settings cannot work together;
        the loader reports it located, before any server starts."""
        return None

    def required_modules(self, scenario: Any = None) -> tuple[str, ...]:
        return self.requires

    def prestart(self, env: Any) -> None:
        """Optional: start slow shared servers in the background once the session knows it will need them."""

    def setup(self, ctx: "RunContext") -> None:
        """Build the system; register ``ctx.proxies`` / ``ctx.processes`` / ``ctx.clocks``."""

    def run(self, ctx: "RunContext") -> Observations:
        raise NotImplementedError

    def teardown(self, ctx: "RunContext") -> None:
        """Release what :meth:`setup` built (servers started through ``ctx.env`` are shared)."""

    def check(self, spec: "CheckSpec", obs: Observations, ctx: "RunContext") -> CheckResult:
        from pytest_cbchaos.scenario import checks

        if spec.kind == "invariant":
            fn: Callable[..., CheckResult] | None = getattr(self, "check_" + spec.name.replace("-", "_"), None)
            if fn is None:
                return CheckResult("skipped", f"{spec.name}: no checker implemented for target {self.name!r}")
            result = fn(obs, ctx)
            if spec.name in self.measured:
                result.enforced = False
            return result
        if spec.kind == "recovery":
            return checks.recovery_deadline(spec, obs)
        return checks.linearizability(spec, obs, ctx)


def import_object(spec: str, base: Path, key: str) -> Any:
    """``"pkg.mod:attr"`` from a scenario parameter (the scenario's directory importable); ValueError names ``key``."""
    mod_name, _, attr = str(spec).partition(":")
    added = str(base) not in sys.path
    if added:
        sys.path.insert(0, str(base))
    try:
        return getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{key} {spec!r}: {type(exc).__name__}: {exc} (expected 'package.module:attr')") from None
    finally:
        if added:
            sys.path.remove(str(base))


def resolve_target(name: str, base: Path | None = None) -> Target:
    """A target by registry name or ``module:attr``; raises :class:`TargetNotFound`."""
    spec = BUILTIN.get(name, name)
    expected = "one of " + ", ".join(BUILTIN) + " or 'package.module:attr'"
    if ":" not in spec:
        raise TargetNotFound("unknown target", expected)
    mod_name, _, attr = spec.partition(":")
    added = False
    if base is not None and str(base) not in sys.path and name not in BUILTIN:
        sys.path.insert(0, str(base))
        added = True
    try:
        module = importlib.import_module(mod_name)
        obj = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise TargetNotFound(f"cannot import target ({type(exc).__name__}: {exc})", expected) from None
    finally:
        if added:
            sys.path.remove(str(base))
    target = obj() if isinstance(obj, type) else obj
    if not isinstance(target, Target):
        raise TargetNotFound(f"{spec} is not a pytest_cbchaos.scenario.targets.Target", expected)
    return target
