"""Run one scenario: build the target, run the bounded workload while the fault timeline plays,
heal, check, and return a :class:`ScenarioResult` (the report's per-scenario record).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_cbchaos.env import Environment
from pytest_cbchaos.faults.clock import SkewedClock
from pytest_cbchaos.faults.controller import FaultController, FaultParameterError
from pytest_cbchaos.faults.kinds import FAULT_KINDS
from pytest_cbchaos.params import defaults
from pytest_cbchaos.faults.journal import FaultJournal
from pytest_cbchaos.report.topology import lane_record
from pytest_cbchaos.report.verdict import Audit, RunVerdict, judge
from pytest_cbchaos.scenario.model import FaultSpec, Scenario
from pytest_cbchaos.scenario.target import CheckResult, Observations, Target, TargetUnavailable
from pytest_cbchaos.scenario.targets import resolve_target

MAX_OCCURRENCES = 100  # bound on repetitions of one `every` fault


@dataclass
class RunContext:
    """Everything a target needs during one run. ``stop`` is set when the workload must end."""

    scenario: Scenario
    target: Target
    env: Environment | None
    seed: int
    artifacts: Path | None = None
    journal: FaultJournal = field(default_factory=FaultJournal)
    stop: threading.Event = field(default_factory=threading.Event)
    proxies: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, Any] = field(default_factory=dict)
    clocks: dict[str, SkewedClock] = field(default_factory=dict)
    admin: Any = None  # a direct Redis client for redis actions and verification reads
    t0_ns: int = field(default_factory=time.monotonic_ns)
    state: dict[str, Any] = field(default_factory=dict)  # target scratch space

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.faults = FaultController(self.journal)
        self.deadline = time.monotonic() + self.scenario.budgets.wall_s

    def t_ms(self, ns: int | None = None) -> float:
        return ((time.monotonic_ns() if ns is None else ns) - self.t0_ns) / 1e6

    def ops_left(self, done: int) -> bool:
        """Bounded loops: True while the workload may continue (time, per-worker ops and wall budget)."""
        return (not self.stop.is_set() and done < self.scenario.workload.ops_per_worker
                and time.monotonic() < self.deadline)

    def pace(self) -> bool:
        """Wait the workload interval (interruptible by ``stop``); returns False once stopped."""
        return not self.stop.wait(self.scenario.workload.interval_ms / 1000.0)


@dataclass
class CheckOutcome:
    label: str
    kind: str
    name: str
    result: CheckResult
    line: int | None = None


@dataclass
class ScenarioResult:
    scenario: Scenario
    seed: int
    outcome: str  # passed | failed | error
    duration_s: float
    checks: list[CheckOutcome]
    observations: Observations
    faults: list[dict[str, Any]]
    backends: dict[str, Any]
    error: str | None = None
    artifacts: Path | None = None
    verdict: RunVerdict | None = None
    artifacts_error: str | None = None

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        return [c for c in self.checks if c.result.failed]

    def to_record(self) -> dict[str, Any]:
        """The report.json ``tests[]`` shape for a scenario (docs/report-schema.md)."""
        obs = self.observations
        t0 = self._t0_ns
        return {
            "kind": "scenario", "name": self.scenario.name, "target": self.scenario.target,
            "file": str(self.scenario.path), "seed": self.seed, "outcome": self.outcome,
            "duration_s": round(self.duration_s, 4), "description": self.scenario.description,
            "covers": list(self.scenario.covers), "error": self.error,
            "faults": [fault_record(f, t0) for f in self.faults],
            "checks": [{"name": c.label, "kind": c.kind, "verdict": c.result.verdict,
                        "enforced": c.result.enforced, "detail": c.result.detail,
                        "counterexample": c.result.counterexample, "measured": c.result.measured,
                        "line": c.line} for c in self.checks],
            "latencies": obs.latencies[:5000], "transitions": obs.transitions[:2000],
            "recoveries": dict(obs.recoveries), "probes": list(obs.probes), "metrics": small_metrics(obs.metrics),
            "errors": list(obs.errors)[:50],
            "history_ops": sum(1 for e in obs.history if e.get("type") == "invoke"),
            "backends": self.backends,
            "artifacts": str(self.artifacts) if self.artifacts else None,
            "artifacts_error": self.artifacts_error,
            **(self.verdict or judge([], Audit())).fields(),
            **self._lane(t0),
        }

    def _lane(self, t0: int) -> dict[str, Any]:
        """``topology``: the lane of a run with a topology nemesis (docs/report-schema.md#topology-lane)."""
        if self.lane is None:
            return {}
        return {"topology": lane_record(self.lane, [fault_record(f, t0) for f in self.faults], t0)}

    _t0_ns: int = 0
    lane: Any = None  # the journal's topology lane (report/topology.py)


def small_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The report keeps scalars, short lists and small dicts of scalars; raw op lists stay in artifacts."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        elif isinstance(value, (list, tuple)) and len(value) <= 50 and all(
                isinstance(v, (str, int, float, bool)) or v is None for v in value):
            out[key] = list(value)
        elif isinstance(value, dict) and len(value) <= 50 and all(
                isinstance(v, (str, int, float, bool)) or v is None for v in value.values()):
            out[key] = dict(value)
    return out


def fault_record(window: dict[str, Any], t0_ns: int) -> dict[str, Any]:
    """A journal entry plus ``start_ms``/``end_ms`` relative to the run's time axis."""
    rec = dict(window)
    rec["start_ms"] = round((window["start_ns"] - t0_ns) / 1e6, 3)
    rec["end_ms"] = None if window.get("end_ns") is None else round((window["end_ns"] - t0_ns) / 1e6, 3)
    return rec


class FaultScheduler(threading.Thread):
    """Plays the fault timeline against the context's proxies, processes, clocks and Redis."""

    def __init__(self, ctx: RunContext) -> None:
        super().__init__(name=f"cbchaos-faults-{ctx.scenario.name}", daemon=True)
        self.ctx = ctx
        self.errors: list[str] = []
        self.actions = self._plan()
        # seconds spent inside fault calls (a failover returns once it is complete): the timeline after such
        # a call, and the workload's end, shift by it, so the run observes what the file planned after it
        self.blocked_s = 0.0
        self.in_action = False
        self.started = time.monotonic()

    def _plan(self) -> list[tuple[float, int, str, FaultSpec, int]]:
        duration = self.ctx.scenario.workload.duration_s
        plan = []
        for idx, f in enumerate(self.ctx.scenario.faults):
            t, n = f.at, 0
            limit = min(f.times or MAX_OCCURRENCES, MAX_OCCURRENCES) if f.every else 1
            while t < duration and n < limit:
                plan.append((t, 1, "apply", f, idx))
                if f.duration is not None:
                    plan.append((min(t + f.duration, duration), 0, "heal", f, idx))
                n += 1
                if not f.every:
                    break
                t += f.every
        return sorted(plan, key=lambda a: (a[0], a[1]))

    def workload_over(self) -> bool:
        """The planned duration has passed, not counting time inside fault calls, and none is running."""
        duration = self.ctx.scenario.workload.duration_s
        return not self.in_action and time.monotonic() >= self.started + duration + self.blocked_s

    def run(self) -> None:
        active: dict[int, Any] = {}
        self.started = time.monotonic()
        for t, _, action, spec, idx in self.actions:
            if self.ctx.stop.wait(max(0.0, self.started + t + self.blocked_s - time.monotonic())):
                break
            failures = len(self.ctx.journal.failures())
            self.in_action, called = True, time.monotonic()
            try:
                if action == "apply":
                    handle = self._apply(spec)
                    if not (spec.kind == "kill" and spec.duration is None):
                        active[idx] = handle  # a kill without `for` stays down: the system must recover itself
                else:
                    self._heal(spec, active.pop(idx, None))
            except Exception as exc:  # a fault that cannot be applied is reported, the run goes on
                self.errors.append(f"{action} {spec.kind} on {spec.target} at {t:g}s: {type(exc).__name__}: {exc}")
                if action == "apply" and len(self.ctx.journal.failures()) == failures:
                    self.ctx.journal.reject(spec.kind, spec.target, spec.params, exc)  # failed before any control call
            finally:
                self.blocked_s += time.monotonic() - called
                self.in_action = False
        for idx, handle in list(active.items()):
            try:
                self._heal(self.ctx.scenario.faults[idx], handle)
            except Exception as exc:
                self.errors.append(f"heal {self.ctx.scenario.faults[idx].kind}: {type(exc).__name__}: {exc}")

    def _apply(self, f: FaultSpec) -> Any:
        """One :class:`FaultController` call per kind; params are the kind's defaults (faults/kinds.py)
        overlaid with the file's, which the loader checked."""
        ctx, c = self.ctx, self.ctx.faults
        p = {**defaults(FAULT_KINDS[f.kind].params), **f.params}
        if f.family == "proxy":
            proxy = ctx.proxies[f.target]
            if f.kind == "partition":
                return c.partition(proxy, f.stream)
            if f.kind == "down":
                return c.down(proxy)
            return getattr(c, f.kind)(proxy, stream=f.stream, toxicity=f.toxicity, **p)
        if f.family == "process":
            target = ctx.processes[f.target]
            if f.kind == "pause":
                return c.process(target).pause()
            if f.kind == "kill":
                c.process(target).kill()
                return target
            return c.process(target).restart(graceful=p["graceful"])
        if f.family == "host":
            return c.cpu_stress(workers=p["workers"], for_s=p["for_s"])
        if f.family == "sentinel":
            nemesis = c.sentinel(ctx.state["sentinel"])
            nemesis.failover()
            return None
        if f.family in ("replicated", "cluster"):
            return self._topology_fault(f, p)
        if f.family == "clock":
            clock = ctx.clocks[f.target]
            return c.skew_clock(clock, float(p["offset_s"]), float(p["drift_ppm"]), worker=f.target)
        return self._redis_action(f, p)

    def _topology_fault(self, f: FaultSpec, p: dict[str, Any]) -> Any:
        """``replication_lag`` on the topology's primaries; ``isolate_primary`` (Sentinel: the sentinels promote;
        Cluster: the primary of ``cluster_key``, its replica promoted ``promote_after_s`` later,
        docs/redis-topologies.md#cluster-split-brain);
        ``migrate_slot`` (instant) of ``slot`` (default: the slot of the key the target registered as
        ``cluster_key``) to ``to`` (default: the next primary)."""
        state, c = self.ctx.state, self.ctx.faults
        nemesis = c.cluster(state["cluster"]) if "cluster" in state else c.sentinel(state["sentinel"])
        if f.kind == "replication_lag":
            return nemesis.replication_lag(p["ms"])
        if f.kind == "isolate_primary":
            if "cluster" in state:
                return nemesis.isolate_primary(state["cluster_key"], promote_after_s=p["promote_after_s"])
            if p["promote_after_s"]:
                raise FaultParameterError(f"isolate_primary: promote_after_s={p['promote_after_s']!r} needs a "
                                          "cluster topology (under Sentinel the sentinels decide when to promote)")
            return nemesis.isolate_primary()
        import redis.cluster

        topo = state["cluster"]
        slot = p["slot"] if p["slot"] is not None else redis.cluster.key_slot(state["cluster_key"].encode())
        to = p["to"]
        if to is None:
            names = sorted(n.name for n in topo.primaries())
            to = names[(names.index(topo.slot_owner(slot).name) + 1) % len(names)]
        nemesis.migrate_slot(slot, to)
        return None

    def _heal(self, f: FaultSpec, handle: Any) -> None:
        if handle is None:
            return
        if f.kind == "kill":  # `for` after a kill: bring it back on the same port
            with self.ctx.journal.window("restart", f.target, {"after_kill": True}):
                proc = getattr(handle, "process", None) or handle
                if hasattr(proc, "start") and not getattr(proc, "alive", True):
                    proc.start()
                elif hasattr(proc, "restart"):
                    proc.restart()
            return
        heal = getattr(handle, "heal", None)
        if heal is not None:
            heal()

    def _redis_action(self, f: FaultSpec, p: dict[str, Any]) -> None:
        admin = self.ctx.admin
        if admin is None:
            raise RuntimeError(f"{f.kind}: the target registered no admin Redis client")
        with self.ctx.journal.window(f.kind, f.target, dict(f.params)):
            if f.kind == "flushall":
                admin.flushall()
            elif f.kind == "script_flush":
                admin.script_flush()
            elif f.kind == "client_kill":
                admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            else:  # evict: drop keys matching a pattern (the portable model of LRU/TTL eviction)
                n = 0
                for key in admin.scan_iter(match=p["pattern"], count=100):
                    admin.delete(key)
                    n += 1
                    if n >= p["max_keys"]:
                        break


STOP_POLL_S = 0.01  # how often the workload's end is re-evaluated (a fault call may move it)


def _stop_when_over(ctx: RunContext, scheduler: FaultScheduler) -> None:
    """Set ``ctx.stop`` once the workload's planned duration is over (time in fault calls not counted), or at
    the wall budget's deadline."""
    while not ctx.stop.wait(STOP_POLL_S):
        if scheduler.workload_over() or time.monotonic() >= ctx.deadline:
            ctx.stop.set()


def run_scenario(scenario: Scenario, *, env: Environment | None, seed: int | None = None,
                 artifacts: Path | None = None) -> ScenarioResult:
    """Run ``scenario``; raises :class:`TargetUnavailable` (a skip) before anything starts."""
    target = resolve_target(scenario.target, base=scenario.path.parent)
    reason = target.unavailable(scenario, env=env)
    if reason:
        raise TargetUnavailable(reason)
    seed = scenario.seed if scenario.seed is not None else (seed or 0)
    ctx = RunContext(scenario=scenario, target=target, env=env, seed=seed, artifacts=artifacts)
    for i in range(scenario.topology.workers):
        ctx.clocks.setdefault(f"worker-{i}", SkewedClock(0.0))
    started = time.monotonic()
    obs = Observations()
    error: str | None = None
    scheduler: FaultScheduler | None = None
    try:
        target.setup(ctx)
        ctx.t0_ns = time.monotonic_ns()
        # budgets.wall_s bounds workload + faults; server startup is bounded by its own startup timeout
        ctx.deadline = time.monotonic() + scenario.budgets.wall_s
        scheduler = FaultScheduler(ctx)
        stopper = threading.Thread(target=_stop_when_over, args=(ctx, scheduler), daemon=True,
                                   name=f"cbchaos-stop-{scenario.name}")
        holder: dict[str, Any] = {}

        def work() -> None:
            try:
                holder["obs"] = target.run(ctx)
            except BaseException as exc:  # surfaced below; never swallowed
                holder["exc"] = exc

        runner = threading.Thread(target=work, name=f"cbchaos-workload-{scenario.name}", daemon=True)
        scheduler.start()
        stopper.start()
        runner.start()
        runner.join(max(0.0, ctx.deadline - time.monotonic()))
        ctx.stop.set()
        stopper.join(timeout=1.0)
        scheduler.join(timeout=10.0)
        if runner.is_alive():
            error = f"workload exceeded the wall budget of {scenario.budgets.wall_s:g} s"
            runner.join(timeout=5.0)
        if "exc" in holder:
            exc = holder["exc"]
            if isinstance(exc, TargetUnavailable):
                raise exc
            error = f"workload raised {type(exc).__name__}: {exc}"
        obs = holder.get("obs") or obs
        if scheduler.errors:
            obs.errors.extend(scheduler.errors)
    finally:
        ctx.stop.set()
        try:
            ctx.faults.heal_all()
        finally:
            ctx.faults.stop_watching()
            ctx.journal.close_all()
            target.teardown(ctx)
    checks: list[CheckOutcome] = []
    for spec in scenario.checks:
        try:
            result = target.check(spec, obs, ctx)
        except Exception as exc:
            result = CheckResult("unknown", f"check raised {type(exc).__name__}: {exc}")
        checks.append(CheckOutcome(spec.label, spec.kind, spec.name, result, spec.line))
    verdict = judge_run(checks, obs, ctx.journal, scenario, error, scheduler.errors if scheduler else [])
    if error:
        outcome = "error"
    elif any(c.result.failed for c in checks):
        outcome = "failed"
    else:  # checks passed, yet the run cannot pass when a fault was not applied or nothing was observed
        outcome = "error" if verdict.status == "error" else "passed"
    res = ScenarioResult(scenario=scenario, seed=seed, outcome=outcome, duration_s=time.monotonic() - started,
                         checks=checks, observations=obs, faults=ctx.journal.to_dicts(),
                         backends=env.backends() if env else {}, error=error, artifacts=artifacts, verdict=verdict)
    res._t0_ns, res.lane = ctx.t0_ns, ctx.journal.lane
    if artifacts is not None:
        try:
            write_artifacts(res, artifacts)
        except OSError as exc:  # the verdict stands; the report says why the files are missing
            res.artifacts, res.artifacts_error = None, f"artifacts not written to {artifacts}: {exc}"
    return res


def judge_run(checks: list[CheckOutcome], obs: Observations, journal: FaultJournal, scenario: Scenario,
              error: str | None, fault_errors: list[str]) -> RunVerdict:
    """The scenario's verdict from its checks and its audit (docs/report-schema.md, "Verdict and audit")."""
    counts = journal.counts()
    audit = Audit(faults_requested=counts["requested"], faults_applied=counts["applied"],
                  faults_failed=counts["failed"], ops_observed=obs.ops_observed(),
                  faults_declared=len(scenario.faults), fault_errors=list(fault_errors))
    rows = [{"verdict": c.result.verdict, "enforced": c.result.enforced} for c in checks]
    return judge(rows, audit, [f"run error: {error}"] if error else [])


def write_artifacts(res: ScenarioResult, directory: Path) -> None:
    """history.jsonl, faults.jsonl and results.json (docs/linearizability-design.md#reports shape, abridged)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "history.jsonl", "w", encoding="utf-8") as fh:
        for event in res.observations.history:
            fh.write(json.dumps(event, sort_keys=True, default=str) + "\n")
    with open(directory / "faults.jsonl", "w", encoding="utf-8") as fh:
        for w in res.faults:
            fh.write(json.dumps(w, sort_keys=True) + "\n")
    record = res.to_record()
    lin = [c for c in record["checks"] if c["kind"] == "linearizability"]
    results = {"verdict": lin[0]["verdict"] if lin else None, "model": lin[0]["name"] if lin else None,
               "seed": res.seed, "hypothesis_blob": None,
               "partitions": (lin[0]["measured"] or {}).get("partitions", []) if lin else [],
               "counterexample": lin[0]["counterexample"] if lin else None,
               "faults": res.faults, "backends": res.backends, "duration_s": record["duration_s"],
               "budget": {"wall_s": res.scenario.budgets.wall_s,
                          "check_timeout_s": res.scenario.budgets.check_timeout_s},
               "checks": record["checks"], "audit": record["audit"], "verdict_reasons": record["verdict_reasons"]}
    (directory / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str), "utf-8")
