"""Generic checks shared by all targets: recovery deadlines and the linearizability checker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_cbchaos.lag import judged_text, within
from pytest_cbchaos.scenario.results import CheckResult, Observations

if TYPE_CHECKING:
    from pytest_cbchaos.scenario.model import CheckSpec
    from pytest_cbchaos.scenario.runner import RunContext


def recovery_deadline(spec: "CheckSpec", obs: Observations) -> CheckResult:
    """``recovery: {name, deadline_s}``: the target measured ``obs.recoveries[name]`` seconds.

    Judged lag-aware: ``measured - lag <= deadline``, where ``lag`` is the scheduling lag the target
    observed in that window (``obs.metrics["recovery_lag"][name]``; 0 when none was observed, never
    a guessed constant). docs/recovery.md, "Lag-aware deadlines".
    """
    deadline = float(spec.params["deadline_s"])
    if spec.name not in obs.recoveries:
        return CheckResult("violated", f"recovery {spec.name!r} was never measured (known: "
                           f"{', '.join(sorted(obs.recoveries)) or 'none'})")
    measured = obs.recoveries[spec.name]
    lag_info = dict((obs.metrics.get("recovery_lag") or {}).get(spec.name) or {})
    lag = float(lag_info.get("lag_s") or 0.0)
    m: dict[str, Any] = {"measured_s": measured, "deadline_s": deadline, **lag_info, "lag_s": lag}
    if measured is None:
        return CheckResult("violated", f"{spec.name}: never recovered (deadline {deadline:g} s)",
                           counterexample={"recovery": spec.name, "measured_s": None, "deadline_s": deadline},
                           measured=m)
    m["judged_s"] = round(measured - lag, 4)
    text = judged_text(measured, lag, deadline)
    if not within(measured, lag, deadline):
        return CheckResult("violated", f"{spec.name}: {text} (late by more than the observed lag)",
                           counterexample={"recovery": spec.name, "measured_s": measured, "lag_s": lag,
                                           "deadline_s": deadline},
                           measured=m)
    return CheckResult("ok", f"{spec.name}: {text}", measured=m)


def linearizability(spec: "CheckSpec", obs: Observations, ctx: "RunContext") -> CheckResult:
    """Run ``pytest_cbchaos.linearizability.checker.check(..., mode="report")`` on the recorded history.

    The target records with :class:`pytest_cbchaos.history.recorder.Recorder` and leaves its
    ``History`` in ``obs.metrics["lin_history"]`` (``obs.history`` events are the fallback). When the
    run has an artifact directory, the checker's ``timeline.html`` is written there (linked from
    report.html); ILLEGAL carries the counterexample, an exhausted budget is UNKNOWN (a failure).
    """
    try:
        from pytest_cbchaos.history.store import History
        from pytest_cbchaos.linearizability import checker, models
    except Exception as exc:
        return CheckResult("skipped", f"linearizability checker unavailable ({type(exc).__name__}: {exc})",
                           enforced=False)
    if obs.metrics.get("lin_unsupported"):
        return CheckResult("unknown", f"history not checkable: {obs.metrics['lin_unsupported']}")
    history = obs.metrics.get("lin_history")
    if history is None:
        history = History([e for e in obs.history if e.get("process") != "nemesis"])
    timeout = float(spec.params.get("timeout_s", ctx.scenario.budgets.check_timeout_s))
    try:
        model = models.get_model(spec.name)
        result = checker.check(history, model, timeout=timeout, mode="report")
    except Exception as exc:  # a malformed history is our bug or the target's: report, fail
        return CheckResult("unknown", f"checker error: {type(exc).__name__}: {exc}")
    verdict = str(getattr(result.verdict, "value", result.verdict)).lower()
    partitions = [p.to_dict() for p in result.partitions.values()]
    for p in partitions:
        p["key"] = str(p["key"])
    measured: dict[str, Any] = {"partitions": partitions, "ops": len(result.ops),
                                "elapsed_s": round(result.elapsed_s, 4), "summary": result.summary()}
    if ctx.artifacts is not None:
        try:
            from pytest_cbchaos.linearizability.html import write_timeline

            path = write_timeline(result, ctx.artifacts / "timeline.html", history=history,
                                  title=f"{ctx.scenario.name}: {spec.name}",
                                  recheck=f"cbchaos run {ctx.scenario.path} --seed {ctx.seed}", seed=ctx.seed)
            measured["timeline"] = str(path)
        except Exception as exc:  # the verdict stands without its page
            measured["timeline_error"] = f"{type(exc).__name__}: {exc}"
    if verdict == "ok":
        return CheckResult("ok", f"linearizable against {spec.name} ({result.summary()})", measured=measured)
    if verdict == "illegal":
        return CheckResult("violated", f"ILLEGAL: history is not linearizable against {spec.name} "
                           f"({result.summary()})", counterexample=_jsonable(result.counterexample), measured=measured)
    return CheckResult("unknown", f"checker budget exhausted ({timeout:g} s) against {spec.name} "
                       f"({result.summary()})", measured=measured)


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=repr))
