"""Target ``recovery``: real ``opencode serve`` (``servers/opencode.py``) whose model provider is the
scriptable mock (``servers/mockllm.py``), its REST (control) and ``/event`` (events) planes behind two
fault-proxy listeners, and the stall-recovery runner (``pytest_cbchaos.recovery``) running turns while
the fault timeline hits the server process, the planes or the model. Invariants REC-n are
docs/recovery-design.md#invariants item n.

One warm server (the environment's opencode rig, ``Environment.opencode``) is shared by the recovery
scenarios of a pytest worker: starting opencode and its first turn cost seconds, so each scenario only
resets it (mock scripts, proxy toxics, a dead or paused server brought back, busy sessions aborted).

Model scripts (``topology.opencode.script``):

* ``text`` (default): every request answers ``text(...)`` quickly;
* ``stall``: every main request streams one chunk then stalls forever (the budget runs out);
* ``stall-once``: the first main request stalls forever, later ones answer (recovery succeeds);
* ``slow``: one chunk, a finite stall of ``stall_s`` (default 2.5 s), the rest, finish (long but healthy turn).

Recovery times measured (``checks: - recovery: {name, deadline_s}``):

* ``stall-detected``: progress age when the first ``SESSION_STALLED`` verdict was reached;
* ``unreachable-detected``: seconds from the ``kill`` fault to the ``SERVER_UNREACHABLE`` verdict
  (None = never: e.g. a runner that calls a dead server a stall);
* ``sse-replaced``: seconds from the first events-plane fault to the first silence reconnect;
* ``turn-completed``: seconds from the first fault to the end of the turn that was hit, None if not OK.

Beside each, the scheduling lag observed in its window (``metrics["recovery_lag"]``: the runner's
loop sampler when it covers the window, else this process's thread sampler), which the check
subtracts (docs/recovery.md, "Lag-aware deadlines").

Needs ``pytest_cbchaos.recovery``, the launcher and the mock; without an opencode binary the scenario
skips with the install hint (fails when env ``CI`` is set).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pytest_cbchaos.params import Param
from pytest_cbchaos.lag import LagSampler, judged_text, within
from pytest_cbchaos.scenario.target import CheckResult, Observations, Target, TargetUnavailable, import_object
from pytest_cbchaos.recovery.status import RunStatus

OK_REASONS = ("stop", "end_turn")
RIG_KEY = "opencode-rig"
# topology.opencode key -> RecoveryConfig field
CONFIG_KEYS = {"stall_timeout_s": "stall_timeout", "first_event_timeout_s": "first_event_timeout",
              "sse_silence_timeout_s": "sse_silence_timeout",
              "heartbeat_interval_s": "heartbeat_interval", "request_timeout_s": "request_timeout",
              "probe_timeout_s": "probe_timeout", "max_recoveries": "max_recoveries",
              "abort_grace_s": "abort_grace", "start_timeout_s": "start_timeout",
              "idle_poll_interval_s": "idle_poll_interval", "sse_connect_timeout_s": "sse_connect_timeout"}


class _OpencodeProcess:
    """Process-fault handle for the fault timeline: tells the runner when the fault hit (REC-4)."""

    name = "opencode"

    def __init__(self, rig: Any, ctx: Any) -> None:
        self.rig, self.ctx = rig, ctx

    def _mark(self) -> None:
        runner = self.ctx.state.get("runner")
        if runner is not None:
            runner.mark_fault()
        self.ctx.state.setdefault("fault_at", time.monotonic())

    def kill(self) -> None:
        """SIGKILL the group -- mid-turn: first wait (bounded) until the model request is in flight."""
        wait = float(self.ctx.state.get("topo", {}).get("kill_after_model_request_s", 15.0))
        if wait > 0:
            try:
                self.rig.mock.wait_for("main", count=1, timeout=wait)
            except Exception:
                pass  # no model request yet: kill anyway (the runner must cope with either)
        self._mark()
        self.ctx.state["kill_at"] = time.monotonic()
        self.rig.server.kill()

    def pause(self) -> None:
        self._mark()
        self.rig.server.pause()

    def resume(self) -> None:
        self.rig.server.resume()

    def restart(self, graceful: bool = False) -> None:
        self._mark()
        self.rig.handle.restart()

    @property
    def alive(self) -> bool:
        return bool(self.rig.server.alive)

    def start(self) -> None:
        if not self.rig.server.alive:
            self.rig.handle.restart()


class RecoveryTarget(Target):
    name = "recovery"
    description = "opencode turn runner with stall / server-death recovery"
    requires = ("pytest_cbchaos.recovery", "pytest_cbchaos.servers.opencode", "pytest_cbchaos.servers.mockllm",
                "pytest_cbchaos.servers.toxiproxy", "pytest_cbchaos.env")
    default_proxies = ("opencode-control", "opencode-events")
    default_model = "recovery"
    params = {
        "turns": Param(int, 1, "turns run back to back", minimum=1),
        "prompt": Param(str, "say hello 7f3a", "the prompt of each turn"),
        "expect_status": Param(int, 0, "the exit status every turn must end with", minimum=0),
        "runner_factory": Param(str, None, "'pkg.mod:factory' building your own runner", nullable=True),
    }
    invariants = {
        "REC-1": "honest success", "REC-2": "shared budget", "REC-3": "exhaustion is failure",
        "REC-4": "fast death (SERVER_UNREACHABLE <= 2 s after the fault)", "REC-5": "bounded stall and bootstrap",
        "REC-9": "silent socket replaced", "REC-13": "full retry prompt", "REC-14": "no double prompt",
        "REC-18": "pause tolerance", "REC-20": "bounded run", "expected-status": "final status as scripted",
    }

    def processes(self, topology: Any) -> list[str]:
        return [*super().processes(topology), "opencode"]

    def unavailable(self, scenario: Any = None, env: Any = None) -> str | None:
        """Skip (fail under CI) without opencode, found by the environment's one search (setting,
        project-local .cbchaos-node, PATH)."""
        reason = super().unavailable(scenario, env)
        if reason or env is None:
            return reason
        return env.opencode_unavailable()

    # -- build ----------------------------------------------------------------------------
    def prestart(self, env: Any) -> None:
        """opencode takes seconds to start and warm: begin while the other scenarios run."""
        env.prestart(RIG_KEY, lambda e: e.opencode(warm=True))

    def setup(self, ctx: Any) -> None:
        from pytest_cbchaos.servers import mockllm as m

        if ctx.env is None:
            raise TargetUnavailable("recovery needs servers (no environment)")
        rig = ctx.env.opencode(warm=True)
        rig.prepare()
        rig.mock.reset()
        topo = dict(ctx.scenario.topology.opencode or {})
        ctx.state.update(rig=rig, topo=topo, lag=LagSampler().start_thread())  # this process's lag
        ctx.processes["opencode"] = _OpencodeProcess(rig, ctx)
        ctx.proxies["opencode-control"] = rig.control
        ctx.proxies["opencode-events"] = rig.events
        script = str(topo.get("script", "text"))
        answer = [m.text("recovered answer", chunks=2, delay=0.02)]
        rig.mock.set_default(answer)
        budget = int(topo.get("max_recoveries", 2)) + 1
        if script == "stall":
            rig.mock.script("main", [m.text("partial", chunks=1), m.stall_forever()], times=budget)
        elif script == "stall-once":
            rig.mock.script("main", [m.text("partial", chunks=1), m.stall_forever()], times=1)
        elif script == "slow":
            rig.mock.script("main", [m.text("slow ", chunks=1), m.stall(float(topo.get("stall_s", 2.5))),
                                     m.text("but complete", chunks=2, delay=0.05), m.finish("stop")], times=1)
        elif script != "text":
            raise ValueError(f"topology.opencode.script: got {script!r}; expected one of text, stall, stall-once, slow")

    def teardown(self, ctx: Any) -> None:
        sampler = ctx.state.pop("lag", None)
        if sampler is not None:
            sampler.stop()
        runner = ctx.state.pop("runner", None)
        rig = ctx.state.get("rig")
        if rig is not None:
            rig.mock.release_all()  # a stalled handler must not outlive the scenario
        if runner is not None:
            try:
                runner.close()
            except Exception as exc:
                ctx.state.setdefault("teardown_errors", []).append(f"runner.close: {exc}")

    def topology_error(self, topology: Any) -> tuple[tuple[str, ...], Any, str] | None:
        """The runner's own rules (e.g. sse_silence_timeout >= 1.5 * heartbeat_interval), checked at load."""
        from pytest_cbchaos.recovery.config import RecoveryConfigError

        topo = dict(topology.opencode or {})
        try:
            self._config(topo)
        except RecoveryConfigError as exc:
            key = next((k for k, v in CONFIG_KEYS.items() if v == exc.key), None)
            if key is None:
                return ("topology", "opencode"), topo, f"{exc.key}: {exc.expected}"
            return ("topology", "opencode", key), topo.get(key, exc.value), f"{exc.expected} (runner {exc.key})"
        return None

    def _config(self, topo: dict[str, Any]) -> Any:
        from pytest_cbchaos.recovery import RecoveryConfig

        kw: dict[str, Any] = {"probe_timeout": 0.5, "heartbeat_interval": 1.0, "sse_silence_timeout": 5.0,
                              "start_timeout": 30.0}
        kw.update({CONFIG_KEYS[k]: v for k, v in topo.items() if k in CONFIG_KEYS})
        return RecoveryConfig.for_tests(**kw)

    # -- workload -------------------------------------------------------------------------
    def run(self, ctx: Any) -> Observations:
        from pytest_cbchaos.recovery import RecoveryRunner

        obs = Observations()
        topo, rig = ctx.state["topo"], ctx.state["rig"]
        params = ctx.scenario.workload.params
        cfg = self._config(topo)
        factory = import_object(params["runner_factory"], ctx.scenario.path.parent, "workload.params.runner_factory") \
            if params.get("runner_factory") else RecoveryRunner
        runner = factory(rig.handle, cfg)
        ctx.state["runner"] = runner
        if ctx.state.get("fault_at") is not None:  # a fault already hit before the runner existed
            runner.mark_fault(ctx.state["fault_at"])
        prompt = str(params.get("prompt", "say hello 7f3a"))
        results: list[Any] = []
        obs.metrics.update(cfg=cfg, prompt=prompt, results=results, turn_s=[], turn_end=[])
        for _ in range(int(params.get("turns", 1))):
            if ctx.stop.is_set() and results:
                break  # the duration bounds how many turns start; a started turn always ends (REC-20)
            t0 = time.monotonic_ns()
            res = runner.run_turn(prompt)
            t1 = time.monotonic_ns()
            results.append(res)
            obs.metrics["turn_s"].append((t1 - t0) / 1e9)
            obs.metrics["turn_end"].append(t1 / 1e9)
            obs.add("latencies", {"t_ms": ctx.t_ms(t0), "worker": "runner", "ms": (t1 - t0) / 1e6,
                                  "ok": int(res.status) == 0})
            for a in res.attempts:
                verdict = getattr(a.verdict, "name", str(a.verdict))
                obs.add("transitions", {"t_ms": ctx.t_ms(int(a.ended_at * 1e9)) if a.ended_at else ctx.t_ms(t1),
                                        "worker": "runner", "from": f"attempt {a.n}", "to": verdict})
        obs.metrics["runner_history"] = list(getattr(runner, "history", []))
        obs.metrics["main_prompts"] = [r for r in rig.mock.requests if r.kind == "main"]
        obs.metrics["status"] = [int(r.status) for r in results]
        obs.metrics["recoveries_used"] = [int(r.recoveries_used) for r in results]
        self._measure(obs, ctx)
        self._observe_lag(obs, ctx, runner)
        return obs

    @staticmethod
    def _measure(obs: Observations, ctx: Any) -> None:
        """Each recovery time, and its window ``[start, end]`` (monotonic s) for the lag beside it."""
        results = obs.metrics["results"]
        spans: dict[str, tuple[float, float]] = {}
        obs.metrics["recovery_windows"] = spans
        attempts = [a for r in results for a in r.attempts]
        stall_at = [h.get("verdict_at") for h in obs.metrics["runner_history"]
                    if h.get("type") == "verdict" and h.get("status") == "SESSION_STALLED"]
        stalled = [a for a in attempts if getattr(a.verdict, "name", "") == "SESSION_STALLED"]
        if stalled:
            age = stalled[0].evidence.get("last_progress_age_s")
            obs.recoveries["stall-detected"] = float(age) if age is not None else None
            end = (stall_at[0] if stall_at else None) or stalled[0].ended_at
            if age is not None and end:
                spans["stall-detected"] = (end - float(age), end)
        kill_at = ctx.state.get("kill_at")
        if kill_at is not None:
            dead = [a for a in attempts if getattr(a.verdict, "name", "") == "SERVER_UNREACHABLE"
                    and a.ended_at and a.ended_at >= kill_at]
            took = (dead[0].fault_to_verdict_s if dead and dead[0].fault_to_verdict_s is not None
                    else (dead[0].ended_at - kill_at if dead else None))
            obs.recoveries["unreachable-detected"] = took
            if took is not None:
                spans["unreachable-detected"] = (kill_at, kill_at + took)
        events_faults = [w for w in ctx.journal.to_dicts() if w.get("target") == "opencode-events"]
        if events_faults:
            start = events_faults[0]["start_ns"] / 1e9
            reconnects = [h["t"] for h in obs.metrics["runner_history"]
                          if h.get("type") == "sse.reconnect" and h.get("cause") == "silence" and h["t"] >= start]
            obs.recoveries["sse-replaced"] = (min(reconnects) - start) if reconnects else None
            if reconnects:
                spans["sse-replaced"] = (start, min(reconnects))
        windows = ctx.journal.to_dicts()
        if windows and results:
            first = min(w["start_ns"] for w in windows) / 1e9
            ends = [e for e, r in zip(obs.metrics["turn_end"], results) if e >= first]
            ok = [e for e, r in zip(obs.metrics["turn_end"], results) if e >= first and int(r.status) == 0]
            obs.recoveries["turn-completed"] = (min(ok) - first) if ok and ends and min(ok) == min(ends) else None
            if ok and ends and min(ok) == min(ends):
                spans["turn-completed"] = (first, min(ok))

    @staticmethod
    def _observe_lag(obs: Observations, ctx: Any, runner: Any) -> None:
        """The lag observed in each recovery window: the runner's own loop sampler when it covers the
        window (a detection late by its own wait is judged on the same record, docs/recovery.md), else
        this process's thread sampler. Both are reported."""
        own = getattr(getattr(runner, "core", runner), "lag", None)
        here = ctx.state.get("lag")
        out: dict[str, dict[str, Any]] = {}
        for name, (t0, t1) in obs.metrics.get("recovery_windows", {}).items():
            r = own.window(t0, t1) if isinstance(own, LagSampler) else None
            p = here.window(t0, t1) if isinstance(here, LagSampler) else None
            used, source = (r, "runner") if r is not None and r.covered else (p, "scenario")
            entry: dict[str, Any] = {"lag_source": source if used is not None else "none",
                                     "lag_s": round(used.sum_s, 4) if used is not None else 0.0,
                                     "lag_max_s": round(used.max_s, 4) if used is not None else 0.0}
            if r is not None:
                entry["runner_lag_s"] = round(r.sum_s, 4)
            if p is not None:
                entry["scenario_lag_s"] = round(p.sum_s, 4)
            out[name] = entry
        obs.metrics["recovery_lag"] = out

    # -- invariants -----------------------------------------------------------------------
    def _each(self, obs: Observations, pred: Any, text: str) -> CheckResult:
        results = obs.metrics.get("results") or []
        if not results:  # a check over no turn proves nothing
            return CheckResult("violated", f"{text}: no turn ran (see the workload error)")
        for r in results:
            problem = pred(r)
            if problem:
                return CheckResult("violated", f"{text}: {problem}", counterexample=_result_dict(r))
        return CheckResult("ok", f"{text} ({len(results)} turn(s), statuses {obs.metrics.get('status')})")

    def check_REC_1(self, obs: Observations, ctx: Any) -> CheckResult:
        return self._each(obs, lambda r: int(r.status) == 0 and (r.finish_reason not in OK_REASONS or not r.idle_confirmed)
                          and f"OK with finish_reason={r.finish_reason!r} idle={r.idle_confirmed!r}", "honest success")

    def check_REC_2(self, obs: Observations, ctx: Any) -> CheckResult:
        m = obs.metrics["cfg"].max_recoveries
        return self._each(obs, lambda r: (r.recoveries_used > m or len(r.attempts) > m + 1)
                          and f"{r.recoveries_used} recoveries / {len(r.attempts)} attempts > budget {m}",
                          "shared budget")

    def check_REC_3(self, obs: Observations, ctx: Any) -> CheckResult:
        return self._each(obs, lambda r: r.budget_exhausted and int(r.status) not in (3, 4)
                          and f"exhausted with status {status_name(r.status)}", "exhaustion is failure")

    def check_REC_4(self, obs: Observations, ctx: Any) -> CheckResult:
        if ctx.state.get("kill_at") is not None and obs.recoveries.get("unreachable-detected") is None:
            return CheckResult("violated", "the server was killed but no attempt ended SERVER_UNREACHABLE",
                               counterexample={"attempts": [_attempt_dict(a) for r in obs.metrics.get("results", [])
                                                            for a in r.attempts]})

        def pred(r: Any) -> str | None:
            for a in r.attempts:
                took = a.fault_to_verdict_s or 0.0  # lag-aware (docs/recovery.md)
                if getattr(a.verdict, "name", "") == "SERVER_UNREACHABLE" and not within(took, a.lag_s, 2.0):
                    return f"attempt {a.n}: {judged_text(took, a.lag_s, 2.0)} after the fault"
            return None
        return self._each(obs, pred, "fast death")

    def check_REC_5(self, obs: Observations, ctx: Any) -> CheckResult:
        st = obs.metrics["cfg"].stall_timeout

        def pred(r: Any) -> str | None:
            for a in r.attempts:
                age = a.evidence.get("last_progress_age_s")
                if getattr(a.verdict, "name", "") == "SESSION_STALLED" and age is not None \
                        and not (st - 0.05 <= float(age) and within(float(age), a.lag_s, st + 1.0)):
                    return (f"stall verdict after {float(age):.2f} s without progress (stall_timeout {st}; "
                            f"{judged_text(float(age), a.lag_s, st + 1.0)})")
                wait, boot = a.evidence.get("first_event_wait_s"), obs.metrics["cfg"].bootstrap_timeout
                if a.reason == "first_event_timeout" and wait is not None \
                        and not (boot - 0.05 <= float(wait) and within(float(wait), a.lag_s, boot + 1.0)):
                    return (f"first-event verdict after {float(wait):.2f} s (bootstrap timeout {boot}; "
                            f"{judged_text(float(wait), a.lag_s, boot + 1.0)})")
            return None
        return self._each(obs, pred, "bounded stall")

    def check_REC_9(self, obs: Observations, ctx: Any) -> CheckResult:
        if obs.recoveries.get("sse-replaced") is None and any(
                w.get("target") == "opencode-events" for w in ctx.journal.to_dicts()):
            return CheckResult("violated", "the events plane went silent but the socket was never replaced")
        return self._each(obs, lambda r: int(r.status) != 0 and f"status {status_name(r.status)} after a silenced events socket",
                          "silent socket replaced, turn OK")

    def check_REC_13(self, obs: Observations, ctx: Any) -> CheckResult:
        prompt = obs.metrics.get("prompt", "")
        mains = obs.metrics.get("main_prompts", [])
        if not mains:
            return CheckResult("violated", "no main request reached the model")
        bad = [r for r in mains if prompt not in str(r.user_text() or "")]
        if bad:
            return CheckResult("violated", f"{len(bad)} of {len(mains)} main requests lack the original prompt",
                               counterexample={"seq": [r.seq for r in bad], "user_text": [r.user_text() for r in bad]})
        return CheckResult("ok", f"all {len(mains)} main requests carry the original prompt")

    def check_REC_14(self, obs: Observations, ctx: Any) -> CheckResult:
        n = len(obs.metrics.get("main_prompts", []))
        results = obs.metrics.get("results", [])
        recov = sum(r.recoveries_used for r in results)
        if not results:
            return CheckResult("violated", "no turn ran")
        if n > len(results) + recov:
            return CheckResult("violated", f"{n} main prompts for {len(results)} turns and {recov} recoveries")
        return CheckResult("ok", f"{n} main prompts for {len(results)} turns and {recov} recoveries")

    def check_REC_18(self, obs: Observations, ctx: Any) -> CheckResult:
        return self._each(obs, lambda r: (int(r.status) != 0 or r.recoveries_used) and
                          f"status {status_name(r.status)}, {r.recoveries_used} recoveries after a short pause", "pause tolerance")

    def check_REC_20(self, obs: Observations, ctx: Any) -> CheckResult:
        cfg = obs.metrics["cfg"]
        bound = (cfg.max_recoveries + 1) * (cfg.bootstrap_timeout + cfg.stall_timeout + cfg.abort_grace) + 10
        if not obs.metrics.get("results"):
            return CheckResult("violated", "no turn ended")
        slow = [t for t in obs.metrics.get("turn_s", []) if t > bound]
        if slow:
            return CheckResult("violated", f"a turn took {max(slow):.1f} s > bound {bound:.1f} s")
        return CheckResult("ok", f"every turn within {bound:.1f} s (max {max(obs.metrics['turn_s']):.1f} s)")

    def check_expected_status(self, obs: Observations, ctx: Any) -> CheckResult:
        want = int(ctx.scenario.workload.params.get("expect_status", 0))
        return self._each(obs, lambda r: int(r.status) != want
                          and f"status {status_name(r.status)}, expected {status_name(want)}",
                          f"final status {status_name(want)}")


def status_name(status: Any) -> str:
    """A run status as its name (the enum's, not its exit code): ``SESSION_STALLED (4)``."""
    try:
        st = RunStatus(int(status))
    except ValueError:
        return str(status)
    return f"{st.name} ({int(st)})"


def _attempt_dict(a: Any) -> dict[str, Any]:
    return {"n": a.n, "verdict": getattr(a.verdict, "name", str(a.verdict)), "reason": a.reason,
            "fault_to_verdict_s": a.fault_to_verdict_s, "sse_connections": a.sse_connections,
            "aborted": a.aborted, "generation": a.generation,
            "last_progress_age_s": a.evidence.get("last_progress_age_s")}


def _result_dict(r: Any) -> dict[str, Any]:
    return {"status": getattr(r.status, "name", str(r.status)), "finish_reason": r.finish_reason,
            "idle_confirmed": r.idle_confirmed, "recoveries_used": r.recoveries_used,
            "budget_exhausted": r.budget_exhausted, "error": r.error,
            "attempts": [_attempt_dict(a) for a in r.attempts]}

