"""What a scenario target is: the :class:`Target` base class and the data a run passes through it
(:class:`Observations` in, :class:`CheckResult` out). Systems subclass :class:`Target` and register
it (docs/scenarios.md, "Registering a system"); the runner, the checks and the registry depend on
this module only.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pytest_cbchaos.env.environment import Unavailable
from pytest_cbchaos.params import Params
from pytest_cbchaos.scenario.results import CheckResult, Observations  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from pytest_cbchaos.scenario.model import CheckSpec, Topology
    from pytest_cbchaos.scenario.runner import RunContext


# The target's system (or a server it needs) is not installed: the scenario is skipped (failed when
# ``required``); the environment raises the same exception for a server it cannot start.
TargetUnavailable = Unavailable


class Target:
    """Base class: subclasses set the class attributes and implement :meth:`run`."""

    name: str = "target"
    description: str = ""
    requires: tuple[str, ...] = ()          # importable modules the target needs
    invariants: dict[str, str] = {}         # id -> one-line description
    measured: frozenset[str] = frozenset()  # invariant ids that are measure-and-report (M)
    default_proxies: tuple[str, ...] = ()
    default_model: str = "register"
    # ``workload.params`` the target reads (docs/scenarios.md, "Parameters"); the loader rejects others.
    # None: undeclared, so any key passes (targets written before params were typed).
    params: Params | None = None

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

    def params_error(self, topology: Any, params: dict[str, Any]) -> tuple[tuple[str, ...], Any, str] | None:
        """Like :meth:`topology_error`, for workload params that cannot work with the topology."""
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
