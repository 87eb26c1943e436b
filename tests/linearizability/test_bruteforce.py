"""Differential test: the optimised search agrees with a brute-force enumeration on small
random cas-register / register histories (with crashed ops), including ones built to be
linearizable and then perturbed. Catches a broken reduction (memo, pure-op forcing, symmetry)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_cbchaos.linearizability import CasRegisterModel, RegisterModel, Verdict, check_events
from pytest_cbchaos.linearizability.checker import prepare
from pytest_cbchaos.linearizability.search import PartitionSearch


def brute(ops, model) -> bool:
    required = [op for op in ops if not op.unknown]

    def rec(state, remaining) -> bool:
        if all(op.unknown for op in remaining):
            return True
        min_ret = min(op.ret for op in remaining)
        for op in remaining:
            if op.call > min_ret:
                continue
            ok, ns = model.step(state, op)
            if ok and rec(ns, [o for o in remaining if o is not op]):
                return True
        return False

    assert required is not None
    return rec(model.init(), list(ops))


@st.composite
def histories(draw) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 7))
    kinds = st.sampled_from(["read", "write", "cas"])
    vals = st.integers(0, 2)
    specs = []
    for i in range(n):
        f = draw(kinds)
        call = draw(st.integers(0, 12))
        dur = draw(st.integers(0, 6))
        crashed = draw(st.integers(0, 5)) == 0
        inp = None if f == "read" else (draw(vals) if f == "write" else [draw(vals), draw(vals)])
        point = call + draw(st.integers(0, dur))
        specs.append([i, f, inp, call, call + dur, crashed, point])
    # simulate a linearizable execution at the drawn points; crashed ops may not happen
    state = None
    outs = {}
    for i, f, inp, call, ret, crashed, point in sorted(specs, key=lambda s: (s[6], s[0])):
        if crashed and draw(st.booleans()):
            continue
        if f == "read":
            outs[i] = state
        elif f == "write":
            state = inp
            outs[i] = None
        else:
            outs[i] = state == inp[0]
            if outs[i]:
                state = inp[1]
    if draw(st.booleans()) and outs:  # perturb one output
        i = draw(st.sampled_from(sorted(outs)))
        f = specs[i][1]
        outs[i] = (not outs[i]) if f == "cas" else draw(st.one_of(st.none(), vals))
    events = []
    for i, f, inp, call, ret, crashed, point in specs:
        events.append({"time": call, "process": i, "type": "invoke", "f": f, "value": inp})
        if crashed:
            events.append({"time": ret, "process": i, "type": "info", "f": f, "value": None})
        else:
            events.append({"time": ret, "process": i, "type": "ok", "f": f, "value": outs.get(i)})
    events.sort(key=lambda e: (e["time"], e["type"] != "invoke"))
    for k, e in enumerate(events):
        e["index"] = k
    return events


@settings(max_examples=300, deadline=None)
@given(histories(), st.sampled_from(["cas", "reg"]))
def test_search_matches_brute_force(events, which) -> None:
    model = CasRegisterModel() if which == "cas" else RegisterModel()
    if which == "reg":
        events = [e for e in events if e["f"] != "cas"]
        for k, e in enumerate(events):
            e["index"] = k
    r = check_events(events, model)
    from pytest_cbchaos.history import pair_events
    ops = prepare(pair_events(events, model.read_only), model)[None] if events else []
    expect = brute(ops, model)
    assert r.verdict is (Verdict.OK if expect else Verdict.ILLEGAL)
    # tracked (report-mode) search agrees too
    if ops:
        s = PartitionSearch(ops, model, track=True)
        assert s.run(10**9) == ("ok" if expect else "illegal")


def test_mutant_checker_is_caught() -> None:
    # cache keyed by bits only (a classic bug) makes this linearizable history look illegal
    rows = [
        {"time": 0, "process": 0, "type": "invoke", "f": "write", "value": 1},
        {"time": 0, "process": 1, "type": "invoke", "f": "write", "value": 2},
        {"time": 1, "process": 0, "type": "ok", "f": "write", "value": None},
        {"time": 1, "process": 1, "type": "ok", "f": "write", "value": None},
        {"time": 2, "process": 2, "type": "invoke", "f": "read", "value": None},
        {"time": 3, "process": 2, "type": "ok", "f": "read", "value": 1},
    ]
    for k, e in enumerate(rows):
        e["index"] = k

    class StatelessKey(RegisterModel):
        custom_equality = True

        def equal(self, a, b):  # the mutant: every state "equal"
            return True

        def hash(self, s):
            return 0

    assert check_events(rows, RegisterModel()).verdict is Verdict.OK
    assert check_events(rows, StatelessKey()).verdict is Verdict.ILLEGAL
