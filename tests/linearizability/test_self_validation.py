"""Checker self-validation (docs/linearizability.md, Self-validation): histories generated from
*correct* sequential executions are never ILLEGAL; the same histories with one read changed to a
value impossible anywhere in its window are always ILLEGAL. For register, cas-register, kv,
counter and set.

A history is built from a true order: each op gets a linearization point (its position), an
invoke time before it and a completion time after it, so windows overlap. Some ops crash (``info``,
effect kept or dropped, completion recorded or left pending), some fail (no effect), some are
resent under the same ``op_id`` by a new process after a crash, values repeat (small domains), and
reads reply in Redis form (``b"3"``, ``"3"`` or ``3``; a counter's 0 as nil). Outputs come from a reference executor
written here, not from the models under test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from pytest_cbchaos.linearizability import (CasRegisterModel, RegisterModel, Verdict, check_events,
                                            get_model)

MODELS = ["register", "cas-register", "kv", "counter", "set"]
IMPOSSIBLE = 99  # never written / added; larger than any count a generated history can reach


@dataclass
class Spec:
    """One operation of the true order (``point`` is its linearization position)."""

    f: str
    input: Any
    key: Any
    status: str = "ok"          # ok | info | fail
    applied: bool = True        # info ops: did the effect happen
    pending: bool = False       # info ops: no completion event at all
    op_id: int = 0
    output: Any = None
    call: int = 0
    ret: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


# -- reference semantics (independent of pytest_cbchaos.linearizability.models) -----------------
def execute(model: str, specs: list[Spec]) -> None:
    """Fill ``output`` by running the applied ops in their true order."""
    regs: dict[Any, Any] = {}
    count = 0
    members: set[Any] = set()
    for s in specs:
        if s.status == "fail" or (s.status == "info" and not s.applied):
            continue
        if model == "counter":
            if s.f == "incr":
                count += 1 if s.input is None else int(s.input)
                s.output = count
            else:
                s.output = count
        elif model == "set":
            if s.f == "add":
                members.add(s.input)
            else:
                s.output = sorted(members, key=repr)
        else:
            cur = regs.get(s.key)
            if s.f == "read":
                s.output = cur
            elif s.f == "write":
                regs[s.key] = s.input
            else:
                old, new = s.input
                s.output = cur == old
                if cur == old:
                    regs[s.key] = new


def draw_op(draw: Any, model: str) -> tuple[str, Any, Any]:
    vals = st.integers(0, 2)
    if model == "counter":
        f = draw(st.sampled_from(["incr", "incr", "read"]))
        return f, (draw(st.sampled_from([None, 1, 2, b"3"])) if f == "incr" else None), None
    if model == "set":
        f = draw(st.sampled_from(["add", "add", "read"]))
        return f, (draw(st.sampled_from([0, 1, 2, "x"])) if f == "add" else None), None
    fs = ["read", "write"] if model == "register" else ["read", "write", "cas"]
    f = draw(st.sampled_from(fs))
    key = draw(st.sampled_from(["a", "b"])) if model == "kv" else None
    inp = None if f == "read" else draw(vals) if f == "write" else [draw(vals), draw(vals)]
    return f, inp, key


def redis_form(draw: Any, v: Any) -> Any:
    """A read reply as a client may record it: the value, its text, or Redis's bytes."""
    if v is None or isinstance(v, bool):
        return v
    form = draw(st.sampled_from(["as-is", "str", "bytes"]))
    if isinstance(v, list):
        return [redis_form(draw, x) for x in v]
    text = v.decode() if isinstance(v, bytes) else str(v)
    return v if form == "as-is" else text if form == "str" else text.encode()


@st.composite
def correct_histories(draw: Any, model: str) -> list[dict[str, Any]]:
    """Events of a linearizable execution of ``model`` (see the module docstring)."""
    n = draw(st.integers(1, 8))
    specs: list[Spec] = []
    for i in range(n):
        f, inp, key = draw_op(draw, model)
        s = Spec(f, inp, key, op_id=i)
        roll = draw(st.integers(0, 9))
        if roll < 2:
            s.status, s.applied, s.pending = "info", draw(st.booleans()), draw(st.booleans())
        elif roll == 2:
            s.status = "fail"
        specs.append(s)
        if s.status == "info" and f != "read" and draw(st.booleans()):
            # resend after the crash, same op id, by a new process; takes effect again
            specs.append(Spec(f, inp, key, op_id=i, extras={"resend": True}))
    execute(model, specs)
    for pos, s in enumerate(specs):
        point = 10 * pos + 5
        s.call = point - draw(st.integers(0, 25))
        s.ret = point + draw(st.integers(0, 25))
        if s.status == "fail" or (s.status == "info" and not s.applied):
            s.call = draw(st.integers(0, 10 * len(specs)))  # no effect: any window will do
            s.ret = s.call + draw(st.integers(0, 25))
        if s.f == "read" and s.status == "ok":
            s.output = redis_form(draw, s.output)
            if model == "counter" and s.output == 0 and draw(st.booleans()):
                s.output = None  # GET before any INCR
    return to_events(specs)


def to_events(specs: list[Spec]) -> list[dict[str, Any]]:
    """Assign processes (sequential, a crashed process is retired) and emit time-ordered events."""
    order = sorted(range(len(specs)), key=lambda i: (specs[i].call, i))
    free_at: dict[int, float] = {}
    next_pid = 0
    rows: list[tuple[float, int, int, dict[str, Any]]] = []
    for i in order:
        s = specs[i]
        pid = next((p for p, t in sorted(free_at.items()) if t < s.call), None)
        if pid is None:
            pid, next_pid = next_pid, next_pid + 1
        free_at.pop(pid, None)
        base = {"process": pid, "f": s.f, "op_id": s.op_id, **s.extras}
        if s.key is not None:
            base["key"] = s.key
        rows.append((s.call, 0, i, dict(base, type="invoke", value=s.input)))
        if s.status == "info":
            if not s.pending:
                rows.append((s.ret, 1, i, dict(base, type="info", value=None, error=["timeout"])))
            continue  # retired: never reused
        value = s.output if s.status == "ok" else None
        rows.append((s.ret, 1, i, dict(base, type=s.status, value=value)))
        free_at[pid] = s.ret
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return [dict(ev, time=t, index=k) for k, (t, _, _, ev) in enumerate(rows)]


def mutate_a_read(events: list[dict[str, Any]], model: str, pick: int) -> list[dict[str, Any]] | None:
    """Change one ok read's output to a value impossible at any point; None if there is no read."""
    reads = [k for k, e in enumerate(events) if e["type"] == "ok" and e["f"] == "read"]
    if not reads:
        return None
    k = reads[pick % len(reads)]
    out = [dict(e) for e in events]
    if model == "set":
        out[k]["value"] = list(out[k]["value"] or []) + [IMPOSSIBLE]
    else:
        out[k]["value"] = IMPOSSIBLE
    return out


def verdict(events: list[dict[str, Any]], model: Any) -> Verdict:
    return check_events(events, model, timeout=30).verdict


#: small histories check in milliseconds: more examples than the profile's default, still seconds
_PROPERTY = settings(max_examples=100)


@pytest.mark.parametrize("model", MODELS)
@_PROPERTY
@given(data=st.data())
def test_correct_executions_are_never_illegal(model: str, data: st.DataObject) -> None:
    events = data.draw(correct_histories(model))
    assert verdict(events, get_model(model)) is Verdict.OK, events


@pytest.mark.parametrize("model", MODELS)
@_PROPERTY
@given(data=st.data())
def test_an_impossible_read_is_always_illegal(model: str, data: st.DataObject) -> None:
    events = data.draw(correct_histories(model))
    bad = mutate_a_read(events, model, data.draw(st.integers(0, 7)))
    if bad is None:
        bad = events + [
            {"type": "invoke", "process": 1000, "f": "read", "value": None, "time": 10**6},
            {"type": "ok", "process": 1000, "f": "read", "value": [IMPOSSIBLE] if model == "set"
             else IMPOSSIBLE, "time": 10**6 + 1}]
        if model == "kv":
            bad[-2]["key"] = bad[-1]["key"] = "a"
        bad[-2]["index"], bad[-1]["index"] = len(events), len(events) + 1
    assert verdict(bad, get_model(model)) is Verdict.ILLEGAL, bad


# -- the property can fail: mutant models are caught -------------------------------------------
class RawEqualityRegister(RegisterModel):
    """Mutant: compares a read with ``==`` (no normalisation), so ``b"3"`` != 3."""

    def step(self, state: Any, op: Any) -> tuple[bool, Any]:
        if op.f == "read":
            return (op.unknown or op.output == state), state
        return super().step(state, op)


class CrashedOpsNeverApplyCas(CasRegisterModel):
    """Mutant: a crashed write/cas is treated as never having taken effect."""

    def step(self, state: Any, op: Any) -> tuple[bool, Any]:
        if op.unknown:
            return True, state
        return super().step(state, op)


_FIND = settings(max_examples=2000, derandomize=True, database=None, deadline=None,
                 phases=[Phase.generate], suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("model_name, mutant", [("register", RawEqualityRegister()),
                                                ("cas-register", CrashedOpsNeverApplyCas())])
def test_the_property_catches_a_mutant_model(model_name: str, mutant: Any) -> None:
    found = find(correct_histories(model_name), lambda ev: verdict(ev, mutant) is Verdict.ILLEGAL,
                 settings=_FIND)
    assert verdict(found, get_model(model_name)) is Verdict.OK


def test_generated_histories_cover_the_cases() -> None:
    """Crashed (completed and pending), failed, resent ops and byte replies all occur."""
    seen: set[str] = set()

    def note(ev: list[dict[str, Any]]) -> bool:
        invokes = {e["process"] for e in ev if e["type"] == "invoke"}
        done = {e["process"] for e in ev if e["type"] != "invoke"}
        seen.update({e["type"] for e in ev})
        if invokes - done:
            seen.add("pending")
        if any(e.get("resend") for e in ev):
            seen.add("resend")
        if any(isinstance(e["value"], bytes) for e in ev if e["type"] == "ok"):
            seen.add("bytes")
        return seen >= {"info", "fail", "pending", "resend", "bytes"}

    find(correct_histories("kv"), note, settings=_FIND)  # raises NoSuchExample if never covered
