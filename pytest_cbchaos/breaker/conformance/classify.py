"""Name the bug class of one store deviation (docs/adapters.md#bug-classes).

A deviation is one op where the store and the reference model (``breaker/kernel.py``) disagree.
The classifier looks at the op, the model's record before it, what the model expected and what
the store did, and returns a short class id, the invariant it breaks and a sentence a person can
act on ("open window shortened", "second probe owner admitted", ...). The first rule that matches
wins; the order puts the specific classes before the generic ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class BugClass:
    id: str
    cb: str
    message: str


CLASSES = {c.id: c for c in [
    BugClass("second-probe-owner", "CB-3", "second probe owner admitted while a probe is in flight"),
    BugClass("admitted-in-open", "CB-4", "a gate was admitted in OPEN before open_until"),
    BugClass("open-window-shortened", "CB-16", "open window shortened (open_until went down)"),
    BugClass("non-owner-closed", "CB-18", "a non-owner's success closed HALF_OPEN"),
    BugClass("non-owner-resolved-probe", "CB-17", "a caller that does not own the probe resolved or renewed it"),
    BugClass("abandoned-probe-wedge", "CB-5", "an abandoned probe is never reclaimed (HALF_OPEN wedged)"),
    BugClass("owner-refused", "CB-19", "the probe owner's resolution was refused"),
    BugClass("noop-wrote", "CB-8", "an op that changes nothing wrote the record (phantom write)"),
    BugClass("write-not-reported", "CB-6", "the op changed the record but the reply says it did not"),
    BugClass("failure-lost", "CB-9", "a failure was not counted"),
    BugClass("cooldown-not-extended", "CB-9", "a failure while OPEN did not extend the cooldown"),
    BugClass("reset-not-atomic", "CB-25", "reset reported a previous state the record no longer had (read, then write)"),
    BugClass("op-not-recorded", "CB-6", "the op id was not recorded (a retried op would apply twice)"),
    BugClass("wrong-transition", "CB-6", "the store made a different transition than the reference"),
    BugClass("record-differs", "CB-6", "the stored record differs from the reference"),
]}


@dataclass(frozen=True)
class Deviation:
    """One op on which store and model disagree (records are dicts of the compared fields)."""

    op: str
    args: Mapping[str, Any]
    before: Mapping[str, Any]
    expected: Mapping[str, Any]
    observed: Mapping[str, Any]
    want: Mapping[str, Any] = field(default_factory=dict)
    got: Mapping[str, Any] = field(default_factory=dict)
    owner: bool | None = None  # release/renew: does the caller own the probe (model's view)?


def _f(d: Mapping[str, Any], k: str, default: float = 0.0) -> float:
    v = d.get(k)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default


def classify(d: Deviation) -> BugClass:
    """The bug class of ``d`` (``record-differs`` when nothing more specific fits)."""
    e, o, b = d.expected, d.observed, d.before
    if d.op == "gate" and o.get("won") and not e.get("won"):
        if b.get("state") == "half_open" and b.get("half_open_probe_active"):
            return CLASSES["second-probe-owner"]
        if b.get("state") == "open":
            return CLASSES["admitted-in-open"]
    if d.op == "gate" and e.get("won") and not o.get("won") and b.get("state") == "half_open" \
            and b.get("half_open_probe_active"):
        return CLASSES["abandoned-probe-wedge"]
    if b.get("state") == "open" and d.got.get("state") == "open" and "open_until" in d.got \
            and _f(d.got, "open_until") < _f(b, "open_until"):
        return CLASSES["open-window-shortened"]
    if b.get("state") == "half_open" and not e.get("applied") and o.get("new_state", d.got.get("state")) == "closed":
        if d.op == "record_success" or (d.op == "release_probe" and d.owner is False):
            return CLASSES["non-owner-closed"]
    if d.op in ("release_probe", "renew_probe") and d.owner is False \
            and (o.get("applied") or o.get("renewed")) and not (e.get("applied") or e.get("renewed")):
        return CLASSES["non-owner-resolved-probe"]
    if d.op in ("release_probe", "renew_probe") and d.owner and e.get("applied") and not o.get("applied"):
        return CLASSES["owner-refused"]
    if d.op == "record_failure" and b.get("state") == "open" and "open_until" in d.got \
            and _f(d.got, "open_until") < _f(d.want, "open_until"):
        return CLASSES["cooldown-not-extended"]
    if d.op == "record_failure" and "failure_count" in d.got \
            and d.got.get("failure_count", 0) < d.want.get("failure_count", 0):
        return CLASSES["failure-lost"]
    if d.op == "reset" and "prev_state" in o and o.get("prev_state") != e.get("prev_state"):
        return CLASSES["reset-not-atomic"]
    if "applied" in o and o.get("applied") != e.get("applied"):
        if o.get("prev_state") == e.get("prev_state") and o.get("new_state") == e.get("new_state"):
            return CLASSES["noop-wrote" if o.get("applied") else "write-not-reported"]
    if o.get("new_state", e.get("new_state")) != e.get("new_state") or \
            o.get("prev_state", e.get("prev_state")) != e.get("prev_state"):
        return CLASSES["wrong-transition"]
    diff = [f for f in d.want if d.got.get(f) != d.want.get(f)]
    if diff == ["recent_ops"]:
        return CLASSES["op-not-recorded"]
    return CLASSES["record-differs"]


def describe(d: Deviation, klass: BugClass | None = None) -> str:
    """One line: class message, invariant and the op with store vs reference."""
    k = klass or classify(d)
    args = ", ".join(f"{a}={v!r}" for a, v in sorted(d.args.items()) if v is not None)
    diff = {f: (d.got.get(f), d.want.get(f)) for f in d.want if d.got.get(f) != d.want.get(f)}
    out = {f: (d.observed.get(f), d.expected.get(f)) for f in d.observed if d.observed.get(f) != d.expected.get(f)}
    parts = [f"{k.message} [{k.cb}, {k.id}]: {d.op}({args})"]
    if out:
        parts.append(f"reply (store, reference) {out}")
    if diff:
        parts.append(f"record (store, reference) {diff}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Finding:
    """One bug class with the example that shows it (the shrunk one, in survey mode)."""

    klass: BugClass
    detail: str
    example: tuple[str, ...] = ()
    source: str = "store machine"

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.klass.id, "cb": self.klass.cb, "message": self.klass.message,
                "detail": self.detail, "example": list(self.example), "source": self.source}

    def format(self) -> str:
        steps = "\n".join(f"    {i + 1}. {s}" for i, s in enumerate(self.example))
        return f"{self.klass.cb} {self.klass.message} [{self.klass.id}]\n  {self.detail}" + \
            (f"\n  minimal example:\n{steps}" if steps else "")
