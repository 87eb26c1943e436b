"""Target ``recovery``: real ``opencode serve`` behind two fault-proxy planes (control, events) with
the scriptable mock model provider; the stall-recovery runner runs turns while faults hit the
server process, the planes or the model. Invariants REC-n are opencode-recovery.md §6 item n.

Needs: ``pytest_cbchaos.recovery`` (runner), ``pytest_cbchaos.servers.opencode`` (launcher),
``pytest_cbchaos.servers.mockllm`` and an opencode binary; otherwise the scenario is skipped.
"""

from __future__ import annotations

import time
from typing import Any

from pytest_cbchaos.scenario.targets import CheckResult, Observations, Target, TargetUnavailable

OK_REASONS = ("stop", "end_turn")


class RecoveryTarget(Target):
    name = "recovery"
    description = "opencode turn runner with stall / server-death recovery"
    requires = ("pytest_cbchaos.recovery.facade", "pytest_cbchaos.servers.opencode", "pytest_cbchaos.servers.mockllm",
                "pytest_cbchaos.servers.toxiproxy")
    default_proxies = ("opencode-control", "opencode-events")
    default_model = "recovery"
    invariants = {
        "REC-1": "honest success", "REC-2": "shared budget", "REC-3": "exhaustion is failure",
        "REC-4": "fast death (SERVER_UNREACHABLE <= 2 s after the fault)", "REC-5": "bounded stall",
        "REC-9": "silent socket replaced", "REC-13": "full retry prompt", "REC-14": "no double prompt",
        "REC-18": "pause tolerance", "REC-20": "bounded run", "expected-status": "final status as scripted",
    }

    def processes(self, topology: Any) -> list[str]:
        return [*super().processes(topology), "opencode"]

    def unavailable(self, scenario: Any = None) -> str | None:
        reason = super().unavailable(scenario)
        if reason:
            return reason
        from pytest_cbchaos.servers import opencode as oc

        finder = getattr(oc, "find_opencode", None)
        try:
            found = finder() if finder else None
        except Exception as exc:
            return f"opencode binary not found: {exc}"
        return None if found else "opencode binary not found (install: npm install --prefix .cbchaos-node opencode-ai)"

    def setup(self, ctx: Any) -> None:
        from pytest_cbchaos.servers import mockllm, opencode

        if ctx.env is None:
            raise TargetUnavailable("recovery needs servers (no server pool)")
        topo = ctx.scenario.topology.opencode or {}
        try:
            mock = mockllm.MockLLM()
            mock.start()
            server = opencode.start_opencode(provider_url=mock.base_url, workdir=ctx.env.workdir / "opencode")
        except AttributeError as exc:
            raise TargetUnavailable(f"opencode launcher API not available yet: {exc}") from None
        ctx.state.update(mock=mock, server=server, topo=topo)
        ctx.processes["opencode"] = server
        upstream = f"127.0.0.1:{server.port}"
        ctx.proxies["opencode-control"] = ctx.env.proxy("opencode-control", upstream)
        ctx.proxies["opencode-events"] = ctx.env.proxy("opencode-events", upstream)
        script = topo.get("script", "text")
        times = int(topo.get("max_recoveries", 2)) + 1
        if script == "stall":
            mock.script("main", [mockllm.stall_forever()], times=times)
        elif script == "slow":
            mock.script("main", [mockllm.text("hello", chunks=10, delay=0.2), mockllm.finish("stop")], times=times)

    def teardown(self, ctx: Any) -> None:
        for key in ("server", "mock"):
            obj = ctx.state.get(key)
            if obj is not None:
                try:
                    (getattr(obj, "release_all", None) or (lambda: None))()
                    obj.stop()
                except Exception:
                    pass

    def run(self, ctx: Any) -> Observations:
        from pytest_cbchaos.recovery.config import RecoveryConfig
        from pytest_cbchaos.recovery.facade import RecoveryRunner
        from pytest_cbchaos.recovery.handle import ServerTarget

        obs = Observations()
        topo = ctx.state["topo"]
        cfg = RecoveryConfig(stall_timeout=float(topo.get("stall_timeout_s", 3.0)),
                             sse_silence_timeout=float(topo.get("sse_silence_timeout_s", 2.0)),
                             heartbeat_interval=1.0, max_recoveries=int(topo.get("max_recoveries", 2)))
        server = ctx.state["server"]
        control, events = ctx.proxies["opencode-control"], ctx.proxies["opencode-events"]
        target = ServerTarget(handle=server, base_url=f"http://{control.listen_host}:{control.listen_port}",
                              events_url=f"http://{events.listen_host}:{events.listen_port}",
                              password=getattr(server, "password", None),
                              directory=str(getattr(server, "project_dir", "") or "") or None)
        runner = RecoveryRunner(target, cfg)
        prompt = str(ctx.scenario.workload.params.get("prompt", "say hello"))
        results = []
        try:
            for n in range(int(ctx.scenario.workload.params.get("turns", 1))):
                if ctx.stop.is_set():
                    break
                t0 = time.monotonic_ns()
                res = runner.run_turn(prompt)
                t1 = time.monotonic_ns()
                results.append(res)
                obs.add("latencies", {"t_ms": ctx.t_ms(t0), "worker": "runner", "ms": (t1 - t0) / 1e6,
                                      "ok": int(res.status) == 0})
                for a in getattr(res, "attempts", []):
                    obs.add("transitions", {"t_ms": ctx.t_ms(t0), "worker": "runner", "from": f"attempt {a.n}",
                                            "to": str(a.verdict)})
        finally:
            runner.close()
        obs.metrics.update(results=results, cfg=cfg, prompt=prompt, turn_s=[(l["ms"] / 1000) for l in obs.latencies])
        mock = ctx.state["mock"]
        reqs = mock.requests() if callable(getattr(mock, "requests", None)) else getattr(mock, "requests", [])
        obs.metrics["main_prompts"] = [r for r in reqs if getattr(r, "kind", "") == "main"]
        return obs

    # -- invariants -----------------------------------------------------------------------
    def _each(self, obs: Observations, pred: Any, text: str) -> CheckResult:
        for r in obs.metrics.get("results", []):
            problem = pred(r)
            if problem:
                return CheckResult("violated", f"{text}: {problem}", counterexample={"result": repr(r)[:2000]})
        return CheckResult("ok", text)

    def check_REC_1(self, obs: Observations, ctx: Any) -> CheckResult:
        return self._each(obs, lambda r: int(r.status) == 0 and (r.finish_reason not in OK_REASONS or not r.idle_confirmed)
                          and f"OK with finish_reason={r.finish_reason!r} idle={r.idle_confirmed!r}", "honest success")

    def check_REC_2(self, obs: Observations, ctx: Any) -> CheckResult:
        m = obs.metrics["cfg"].max_recoveries
        return self._each(obs, lambda r: r.recoveries_used > m and f"{r.recoveries_used} > {m}", "shared budget")

    def check_REC_3(self, obs: Observations, ctx: Any) -> CheckResult:
        return self._each(obs, lambda r: r.budget_exhausted and int(r.status) not in (3, 4)
                          and f"exhausted with status {int(r.status)}", "exhaustion is failure")

    def check_REC_4(self, obs: Observations, ctx: Any) -> CheckResult:
        def pred(r: Any) -> str | None:
            for a in getattr(r, "attempts", []):
                if str(a.verdict).endswith("SERVER_UNREACHABLE") and (a.fault_to_verdict_s or 0) > 2.0:
                    return f"attempt {a.n}: {a.fault_to_verdict_s:.2f} s"
            return None
        return self._each(obs, pred, "fast death")

    def check_REC_5(self, obs: Observations, ctx: Any) -> CheckResult:
        st = obs.metrics["cfg"].stall_timeout

        def pred(r: Any) -> str | None:
            for a in getattr(r, "attempts", []):
                if str(a.verdict).endswith("SESSION_STALLED") and a.fault_to_verdict_s is not None \
                        and not (st - 0.05 <= a.fault_to_verdict_s <= st + 1.0):
                    return f"stall verdict after {a.fault_to_verdict_s:.2f} s (stall_timeout {st})"
            return None
        return self._each(obs, pred, "bounded stall")

    def check_REC_9(self, obs: Observations, ctx: Any) -> CheckResult:
        return self._each(obs, lambda r: int(r.status) != 0 and f"status {int(r.status)} after a silenced events socket",
                          "silent socket replaced, turn OK")

    def check_REC_13(self, obs: Observations, ctx: Any) -> CheckResult:
        prompt = obs.metrics["prompt"]
        bad = [r for r in obs.metrics.get("main_prompts", []) if prompt not in str(getattr(r, "body", ""))]
        if bad:
            return CheckResult("violated", f"{len(bad)} main requests lack the original prompt")
        return CheckResult("ok", "every main request carries the original prompt")

    def check_REC_14(self, obs: Observations, ctx: Any) -> CheckResult:
        n = len(obs.metrics.get("main_prompts", []))
        recov = sum(r.recoveries_used for r in obs.metrics.get("results", []))
        turns = len(obs.metrics.get("results", []))
        if n > turns + recov:
            return CheckResult("violated", f"{n} main prompts for {turns} turns and {recov} recoveries")
        return CheckResult("ok", f"{n} main prompts for {turns} turns and {recov} recoveries")

    def check_REC_18(self, obs: Observations, ctx: Any) -> CheckResult:
        return self._each(obs, lambda r: (int(r.status) != 0 or r.recoveries_used) and
                          f"status {int(r.status)}, {r.recoveries_used} recoveries after a short pause", "pause tolerance")

    def check_REC_20(self, obs: Observations, ctx: Any) -> CheckResult:
        cfg = obs.metrics["cfg"]
        bound = (cfg.max_recoveries + 1) * (cfg.stall_timeout + 10) + 30
        slow = [t for t in obs.metrics.get("turn_s", []) if t > bound]
        if slow:
            return CheckResult("violated", f"a turn took {max(slow):.1f} s > bound {bound:.1f} s")
        return CheckResult("ok", f"every turn within {bound:.1f} s")

    def check_expected_status(self, obs: Observations, ctx: Any) -> CheckResult:
        want = ctx.scenario.workload.params.get("expect_status", 0)
        return self._each(obs, lambda r: int(r.status) != int(want) and f"status {int(r.status)} != {want}",
                          f"final status {want}")
