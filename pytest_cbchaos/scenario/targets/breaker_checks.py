"""Pure invariant checks over breaker-store observations (docs/breaker-design.md#invariants), unit-testable.

Every function takes the list of store-op records the workload produced::

    {"t_ms", "end_ms", "worker", "op": "gate"|"failure"|"success"|"release", "ok": bool,
     "reply": {...store reply incl. _prev_state/_new_state/_applied/_now/_reason, open_until...},
     "won": bool, "token": str|None, "outcome": str|None}

and returns a :class:`CheckResult` with a counterexample naming the offending ops.
"""

from __future__ import annotations

from typing import Any

from pytest_cbchaos.scenario.target import CheckResult

EPS_S = 0.05


def _f(reply: dict[str, Any], key: str, default: float = 0.0) -> float:
    try:
        return float(reply.get(key, default))
    except (TypeError, ValueError):
        return default


def server_time(op: dict[str, Any], lease_s: float, claims: dict[str, float]) -> float | None:
    """When the store ran ``op`` (its reply's ``_now``). A reply answered ``_duplicate`` is a
    resend's: a won gate's claim time is its lease minus ``lease_s``; a release ran after its
    claim, so it sorts right behind it; anything else keeps the resend's time, an upper bound."""
    r = op["reply"]
    if r.get("_now") is None:
        return None
    if r.get("_duplicate"):
        if op["op"] == "gate" and op.get("won") and r.get("probe_lease_until") is not None:
            return _f(r, "probe_lease_until") - lease_s
        if op["op"] == "release" and str(op.get("token")) in claims:
            return claims[str(op.get("token"))]
    return _f(r, "_now")


def in_server_order(ops: list[dict[str, Any]], lease_s: float) -> list[dict[str, Any]]:
    """The completed ops in the order the store ran them (docs/breaker.md, CB-3); the invoke
    order (``t_ms``) when some reply has no ``_now``."""
    done = [o for o in ops if o["ok"]]
    claims = {str(o.get("token")): t for o in done if o["op"] == "gate" and o.get("won")
              for t in [server_time(o, lease_s, {})] if t is not None}
    keys = [server_time(o, lease_s, claims) for o in done]
    if any(k is None for k in keys):
        return sorted(done, key=lambda o: o["t_ms"])
    order = sorted(range(len(done)), key=lambda i: (keys[i], done[i]["op"] == "release", done[i]["t_ms"]))
    return [done[i] for i in order]


def single_probe_owner(ops: list[dict[str, Any]], lease_s: float) -> CheckResult:
    """CB-3: at most one current token at any instant (a new claim while another live, unexpired,
    unresolved claim exists is a violation). Judged in the store's order: a gate delayed by the
    network may win after another worker's claim and release both finished."""
    live: dict[str, dict[str, Any]] = {}
    for op in in_server_order(ops, lease_s):
        if op["op"] == "gate" and op.get("won"):
            now = _f(op["reply"], "_now")
            for tok, other in list(live.items()):
                if now < _f(other["reply"], "probe_lease_until", _f(other["reply"], "_now") + lease_s) - 1e-6:
                    label = str(op["reply"].get("_label", ""))
                    if "reclaimed" not in label:
                        return CheckResult("violated", f"two live probe owners: {other['worker']} and {op['worker']}",
                                           counterexample={"first_claim": other, "second_claim": op})
                live.pop(tok, None)
            live[str(op.get("token"))] = op
        elif op["op"] in ("release", "failure") or (op["op"] == "gate" and op["reply"].get("_prev_state") == "closed"):
            if op["op"] == "release":
                live.pop(str(op.get("token")), None)
            elif op["reply"].get("_new_state") in ("open", "closed") and op["reply"].get("_applied"):
                live.clear()
    return CheckResult("ok", "never two live probe owners")


def no_false_rejection(ops: list[dict[str, Any]]) -> CheckResult:
    """CB-15: a gate whose atomic op saw CLOSED admits."""
    bad = [o for o in ops if o["op"] == "gate" and o["ok"] and o["reply"].get("_prev_state") == "closed"
           and not o.get("admitted", True)]
    if bad:
        return CheckResult("violated", f"{len(bad)} gates saw CLOSED and rejected", counterexample={"ops": bad[:5]})
    return CheckResult("ok", "no gate that saw CLOSED rejected")


def open_until_monotone(ops: list[dict[str, Any]]) -> CheckResult:
    """CB-16: open_until never decreases (the workload issues no reset). Only real-time order counts:
    an op that *started* after another op *returned* must see an open_until at least as large
    (concurrent ops may legitimately be applied in either order)."""
    done = sorted((o for o in ops if o["ok"] and "open_until" in o["reply"]),
                  key=lambda o: o.get("end_ms", o["t_ms"]))
    starts = sorted(done, key=lambda o: o["t_ms"])
    best, best_op, i = None, None, 0
    for o in starts:
        while i < len(done) and done[i].get("end_ms", done[i]["t_ms"]) < o["t_ms"]:
            v = _f(done[i]["reply"], "open_until")
            if best is None or v > best:
                best, best_op = v, done[i]
            i += 1
        v = _f(o["reply"], "open_until")
        if best is not None and v < best - 1e-6:
            return CheckResult("violated", f"open_until decreased from {best} to {v}",
                               counterexample={"before": best_op, "after": o})
    return CheckResult("ok", "open_until monotone")


def failure_extends_cooldown(ops: list[dict[str, Any]], cooldown_s: float) -> CheckResult:
    """CB-9: a failure while OPEN leaves open_until >= now + R - eps."""
    for o in ops:
        r = o["reply"]
        if o["op"] == "failure" and o["ok"] and r.get("_prev_state") == "open":
            if _f(r, "open_until") < _f(r, "_now") + cooldown_s - EPS_S:
                return CheckResult("violated", "failure while OPEN did not extend the cooldown",
                                   counterexample={"op": o, "cooldown_s": cooldown_s})
    return CheckResult("ok", "failures while OPEN extend the cooldown")


def threshold_trips(ops: list[dict[str, Any]], failure_threshold: int) -> CheckResult:
    """CB-20: a failure reply with count >= failure_threshold in CLOSED transitions to OPEN."""
    for o in ops:
        r = o["reply"]
        if o["op"] == "failure" and o["ok"] and r.get("_prev_state") == "closed" \
                and _f(r, "failure_count") >= failure_threshold and r.get("_new_state") != "open":
            return CheckResult("violated", f"{int(_f(r, 'failure_count'))} failures >= failure_threshold={failure_threshold} did not trip",
                               counterexample={"op": o})
    return CheckResult("ok", f"reaching failure_threshold={failure_threshold} failures always trips")


def cooldown_consistent(ops: list[dict[str, Any]]) -> CheckResult:
    """CB-26 (one op never mixes clocks): a `cooldown` rejection has _now < open_until, an admission from
    OPEN has _now >= open_until, both in the store's time source."""
    for o in ops:
        r = o["reply"]
        if o["op"] != "gate" or not o["ok"]:
            continue
        now, until = _f(r, "_now"), _f(r, "open_until")
        if r.get("_reason") == "cooldown" and now >= until + 1e-6:
            return CheckResult("violated", "cooldown rejection after open_until", counterexample={"op": o})
        if r.get("_prev_state") == "open" and o.get("won") and now < until - 1e-6:
            return CheckResult("violated", "probe admitted before open_until", counterexample={"op": o})
    return CheckResult("ok", "gate decisions consistent with open_until in store time")


def wedge_bound(wedge_s: float | None, lease_s: float, interval_s: float) -> CheckResult:
    """CB-24: after the probe owner dies another caller becomes probe within L + gate interval + eps."""
    bound = lease_s + interval_s + 0.5
    m = {"wedge_s": wedge_s, "bound_s": bound}
    if wedge_s is None:
        return CheckResult("skipped", "no probe owner was killed during this run", measured=m)
    if wedge_s > bound:
        return CheckResult("violated", f"wedged {wedge_s:.3f} s > {bound:.3f} s", counterexample=m, measured=m)
    return CheckResult("ok", f"wedge {wedge_s:.3f} s <= {bound:.3f} s", measured=m)
