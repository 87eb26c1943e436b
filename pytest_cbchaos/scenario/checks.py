"""Generic checks shared by all targets: recovery deadlines and the linearizability checker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_cbchaos.scenario.targets import CheckResult, Observations

if TYPE_CHECKING:
    from pytest_cbchaos.scenario.model import CheckSpec
    from pytest_cbchaos.scenario.runner import RunContext


def recovery_deadline(spec: "CheckSpec", obs: Observations) -> CheckResult:
    """``recovery: {name, deadline_s}``: the target measured ``obs.recoveries[name]`` seconds."""
    deadline = float(spec.params["deadline_s"])
    if spec.name not in obs.recoveries:
        return CheckResult("violated", f"recovery {spec.name!r} was never measured (known: "
                           f"{', '.join(sorted(obs.recoveries)) or 'none'})")
    measured = obs.recoveries[spec.name]
    m = {"measured_s": measured, "deadline_s": deadline}
    if measured is None:
        return CheckResult("violated", f"{spec.name}: never recovered (deadline {deadline:g} s)",
                           counterexample={"recovery": spec.name, "measured_s": None, "deadline_s": deadline},
                           measured=m)
    if measured > deadline:
        return CheckResult("violated", f"{spec.name}: recovered after {measured:.3f} s > deadline {deadline:g} s",
                           counterexample={"recovery": spec.name, "measured_s": measured, "deadline_s": deadline},
                           measured=m)
    return CheckResult("ok", f"{spec.name}: {measured:.3f} s <= {deadline:g} s", measured=m)


def linearizability(spec: "CheckSpec", obs: Observations, ctx: "RunContext") -> CheckResult:
    """Run the project's checker (``pytest_cbchaos.linearizability``) on the recorded history."""
    try:
        from pytest_cbchaos.linearizability import check_events  # type: ignore[attr-defined]
    except Exception as exc:
        return CheckResult("skipped", f"linearizability checker unavailable ({type(exc).__name__}: {exc})",
                           enforced=False)
    model = ctx.target.resolve_model(spec.name) if hasattr(ctx.target, "resolve_model") else spec.name
    timeout = float(spec.params.get("timeout_s", ctx.scenario.budgets.check_timeout_s))
    events = [e for e in obs.history if e.get("process") != "nemesis"]
    try:
        result = check_events(events, model, timeout=timeout, mode="report")
    except Exception as exc:  # a malformed history is our bug or the target's: report, fail
        return CheckResult("unknown", f"checker error: {type(exc).__name__}: {exc}")
    verdict = str(getattr(result.verdict, "value", result.verdict)).lower()
    verdict = {"true": "ok", "false": "illegal"}.get(verdict, verdict)
    partitions: list[dict[str, Any]] = []
    counterexample = None
    for key, part in getattr(result, "partitions", {}).items():
        pv = str(getattr(part.verdict, "value", part.verdict)).lower()
        partitions.append({"key": str(key), "verdict": pv, "ops": getattr(part, "ops", None),
                           "steps": getattr(part, "steps", None), "elapsed_s": getattr(part, "elapsed_s", None)})
        if counterexample is None and getattr(part, "counterexample", None) is not None:
            ce = part.counterexample
            counterexample = ce if isinstance(ce, dict) else getattr(ce, "to_dict", lambda: repr(ce))()
    measured = {"partitions": partitions, "ops": sum(1 for e in events if e.get("type") == "invoke")}
    if verdict == "ok":
        return CheckResult("ok", f"linearizable against {spec.name}", measured=measured)
    if verdict == "illegal":
        return CheckResult("violated", f"history is not linearizable against {spec.name}",
                           counterexample=counterexample, measured=measured)
    return CheckResult("unknown", f"checker budget exhausted ({timeout:g} s) against {spec.name}", measured=measured)
