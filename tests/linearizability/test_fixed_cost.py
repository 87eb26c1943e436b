"""The checker's per-history shortcuts decide exactly as the general code (docs/linearizability-design.md#performance)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_cbchaos.history.ops import MalformedHistory, Op, pair_events
from pytest_cbchaos.linearizability.values import canonical, check_kinds, is_scalar, same_value

VALUES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3)
          | st.binary(max_size=3) | st.lists(st.integers(), max_size=2) | st.tuples(st.integers()))


def _reference(a, b) -> bool:
    return a == b or (is_scalar(a) and is_scalar(b) and canonical(a) == canonical(b))


@given(VALUES, VALUES)
def test_same_value_matches_the_normalising_comparison(a, b):
    assert same_value(a, b) == _reference(a, b)


def test_with_id_is_replace_with_a_new_id():
    op = Op(3, 1, "cas", [1, 2], True, 5, 9, "ok", key="k", invoke_index=7, complete_index=8,
            error=None, extras={"line": 4})
    a, b = op.with_id(0), op.replace(id=0)
    assert [getattr(a, s) for s in Op.FIELDS] == [getattr(b, s) for s in Op.FIELDS]
    assert op.id == 3


def _events(**override):
    inv = {"type": "invoke", "process": 0, "f": "read", "value": None, "time": 1, "index": 1, "line": 1}
    ok = {"type": "ok", "process": 0, "f": "read", "value": 3, "time": 2, "index": 2, "line": 2}
    inv.update(override)
    return [inv, ok]


@pytest.mark.parametrize("override, message", [
    ({"time": math.nan}, "key 'time' = nan; expected a finite number"),
    ({"index": math.inf}, "key 'index' = inf; expected a finite number"),
    ({"time": True}, "key 'time' = True"), ({"process": -1}, "key 'process' = -1"),
    ({"process": False}, "key 'process' = False"), ({"f": 3}, "key 'f' = 3"), ({"type": "done"}, "key 'type'")])
def test_events_off_the_fast_path_are_still_validated(override, message):
    with pytest.raises(MalformedHistory, match=message.replace("(", r"\(").replace("[", r"\[")):
        pair_events(_events(**override))


def test_float_times_and_extras_pair_as_before():
    (op,) = pair_events(_events(time=0.5, extra="x"))
    assert (op.call, op.ret, op.output, op.extras) == (0.5, 2, 3, {"line": 1, "extra": "x"})


@pytest.mark.parametrize("line", [
    "INFO  jepsen.util - 3\t:invoke\t:read\tnil", "INFO  jepsen.util - 3\t:invoked\t:read\tnil",
    "INFO  jepsen.util - 1\t:fail\t:cas\t[1 2]", "INFO  jepsen.util - 1\t:fail\t:cas\t:timeout",
    "INFO  jepsen.util - 1\t:ok\t:cas\t[nil 2]", "INFO  jepsen.util - 4\t:info\t:cas\t:timed-out",
    "INFO  jepsen.util - 4\t:ok\t:delete\t1", "INFO  jepsen.util - :ok :read 1", "x"])
def test_jepsen_lines_parse_as_by_trying_every_pattern(line):
    from pytest_cbchaos.linearizability import jepsen

    matched = next((p for p in jepsen._PATTERNS if p[2].match(line)), None)
    parsed = jepsen.parse_jepsen_line(line)
    assert (parsed is None) == (matched is None)
    if matched is not None:
        assert parsed[0] == ("ok" if matched[0] == "failcas" else matched[0]) and parsed[2] == matched[1]


def test_extras_are_collected_on_first_use_kept_and_copied():
    import pickle

    (op,) = pair_events(_events(worker="w1"))
    copy = op.with_id(5)
    assert op.extras == {"line": 1, "worker": "w1"} and op.extras is op.extras
    assert copy.extras == op.extras and op.replace(id=2).extras == op.extras
    assert pickle.loads(pickle.dumps(copy)).extras == {"line": 1, "worker": "w1"}


def _key_events(key: str, reads: list, start: int, crashed_write: bool = False) -> list[dict]:
    """One process per key: a write of "1" (crashed if asked), then reads of ``reads``."""
    p, t = start, start * 100
    evs = [{"type": "invoke", "process": p, "f": "write", "key": key, "value": "1", "time": t, "index": t}]
    if crashed_write:
        return evs + [{"type": "info", "process": p, "f": "write", "key": key, "value": None,
                       "time": t + 1, "index": t + 1}]
    evs.append({"type": "ok", "process": p, "f": "write", "key": key, "value": None, "time": t + 1, "index": t + 1})
    for j, v in enumerate(reads, 1):
        evs += [{"type": "invoke", "process": p, "f": "read", "key": key, "value": None,
                 "time": t + 2 * j, "index": t + 2 * j},
                {"type": "ok", "process": p, "f": "read", "key": key, "value": v,
                 "time": t + 2 * j + 1, "index": t + 2 * j + 1}]
    return evs


def test_partitions_after_an_illegal_one_are_never_set_up_in_fast_mode(monkeypatch):
    """Fast mode stops at the first ILLEGAL partition; the others' searches are not even built,
    yet each keeps the verdict it had: cancelled, or OK when it requires nothing (all crashed)."""
    from pytest_cbchaos.linearizability import checker, KVModel
    from pytest_cbchaos.linearizability.checker import Verdict, check

    events = (_key_events("a", ["2"], 0) + _key_events("b", ["1"], 1)
              + _key_events("c", [], 2, crashed_write=True))
    built: list = []
    real = checker._searcher
    monkeypatch.setattr(checker, "_searcher", lambda ops, *a: built.append(ops[0].key) or real(ops, *a))
    r = check(events, KVModel(), fast_path=False)
    assert r.verdict is Verdict.ILLEGAL
    assert built[0] == "a" and "b" not in built
    assert (r.partitions["b"].verdict, r.partitions["b"].reason, r.partitions["b"].required) == (
        Verdict.UNKNOWN, "cancelled: another partition is illegal", 2)
    assert r.partitions["c"].verdict is Verdict.OK
    built.clear()
    report = check(events, KVModel(), fast_path=False, mode="report")
    assert [report.partitions[k].verdict for k in "abc"] == [Verdict.ILLEGAL, Verdict.OK, Verdict.OK]


def _reference_tables(ops):
    """The entry tables built one entry at a time (the search's original construction)."""
    ents, required = [], 0
    for i, op in enumerate(ops):
        ents.append((op.call, 0, op.invoke_index, i))
        if not op.unknown:
            required |= 1 << i
            ents.append((op.ret, 1, op.complete_index if op.complete_index is not None
                         else op.invoke_index, i))
    ents.sort()
    m = len(ents)
    is_call, op_of, ret_of = [False] * (m + 2), [-1] * (m + 2), [-1] * (m + 2)
    call_entry, ret_entry = [0] * len(ops), [-1] * len(ops)
    for j, (_, kind, _, i) in enumerate(ents, 1):
        op_of[j] = i
        if kind == 0:
            is_call[j] = True
            call_entry[i] = j
        else:
            ret_entry[i] = j
    for i in range(len(ops)):
        ret_of[call_entry[i]] = ret_entry[i]
    call_op = [i if c else -1 for i, c in zip(op_of, is_call)]
    return is_call, op_of, ret_of, call_op, call_entry, required


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(-2, 5), st.booleans(), st.booleans()),
                max_size=8))
def test_search_entry_tables_match_the_one_at_a_time_construction(specs):
    """Ties, crashed ops, ops without a completion index and returns before calls included."""
    from pytest_cbchaos.linearizability.models import RegisterModel
    from pytest_cbchaos.linearizability.search import PartitionSearch

    ops = [Op(i, i, "write", 1, None, call, call + d, "info" if crashed else "ok", None, 2 * i,
              None if no_index else 2 * i + 1) for i, (call, d, crashed, no_index) in enumerate(specs)]
    s = PartitionSearch(ops, RegisterModel())
    assert (s.is_call, s.op_of, s.ret_of, s.call_op, s.call_entry, s.required) == _reference_tables(ops)


_PLAIN = st.integers(-3, 3) | st.text(max_size=2)
_OTHER = (st.none() | st.booleans() | st.sampled_from([0.5, math.nan, math.inf]) | st.binary(max_size=2)
          | st.just({"error": "ERR"}) | st.lists(_PLAIN, max_size=3))
#: mostly the shortcut's plain values (so it often answers yes), sometimes anything else
_OP_VALUES = st.one_of(_PLAIN, _PLAIN, _PLAIN, _PLAIN, _OTHER)


@st.composite
def register_ops(draw) -> list[Op]:
    """Register-like ops of every kind the models meet, some crashed: half the time only plain
    values (the shortcut's yes), else values of every type and cas inputs of every shape."""
    plain = draw(st.booleans())
    value = _PLAIN if plain else _OP_VALUES
    ops = []
    for i in range(draw(st.integers(0, 5))):
        f = draw(st.sampled_from(["read", "write", "cas", "append"] + ([] if plain else ["incr"])))
        cas_input = st.one_of(st.lists(value, min_size=2, max_size=2), st.tuples(value, value),
                              *(() if plain else (value,)))
        inp = None if f == "read" else draw(cas_input if f == "cas" else value)
        status = draw(st.sampled_from(["ok", "ok", "ok", "fail", "info"]))
        out = None if f != "read" or status == "info" else draw(st.none() | value)
        call = draw(st.integers(0, 6))  # ids in list order, calls not always: ``prepare`` sorts
        ops.append(Op(i, i, f, inp, out, call, math.inf if status == "info" else call + draw(st.integers(0, 3)),
                      status, invoke_index=i))
    return ops


def _shortcut_is_sound(ops: list[Op], known: tuple[str, ...], all_plain) -> None:
    """Raises (the full checks' error) where ``all_plain`` passes ops the full checks reject."""
    from pytest_cbchaos.linearizability import models

    class Model:
        name = "m"

    Model.ops = known
    if all_plain(ops, known):
        models._check_ops(Model, None, ops)
        check_kinds(models._register_values(ops), "m")


@given(register_ops(), st.sampled_from([("read", "write"), ("read", "write", "cas"),
                                        ("read", "write", "cas", "append")]))
def test_the_plain_values_shortcut_accepts_only_what_the_full_validation_accepts(ops, known):
    """``_all_plain`` (validate's shortcut) never passes ops the full checks would reject."""
    from pytest_cbchaos.linearizability import models
    _shortcut_is_sound(ops, known, models._all_plain)


def test_a_plain_values_shortcut_that_admits_floats_is_caught():
    """Mutant: a float passes the shortcut as an int would (NaN never equals itself)."""
    from pytest_cbchaos.linearizability import models

    def admits_floats(ops, known):
        return models._all_plain([op.replace(input=0) if type(op.input) is float else op for op in ops], known)

    nan_write = [Op(0, 0, "write", math.nan, None, 0, 1, "ok")]
    _shortcut_is_sound(nan_write, ("read", "write"), models._all_plain)
    with pytest.raises(MalformedHistory, match="finite"):
        _shortcut_is_sound(nan_write, ("read", "write"), admits_floats)


@given(register_ops())
def test_prepare_renumbers_exactly_as_a_copy_would(ops):
    _prepare_renumbers(ops)


def _prepare_renumbers(ops: list[Op]) -> None:
    """``prepare`` keeps an op already numbered by its place: the partitions' fields are those
    of a copy numbered 0..n-1 in call order, and no op given to it changes."""
    from pytest_cbchaos.linearizability.checker import prepare
    from pytest_cbchaos.linearizability.models import Model
    before = [[getattr(op, s) for s in Op.FIELDS] for op in ops]
    parts = prepare(ops, Model())
    kept = sorted((op for op in ops if op.status != "fail"), key=lambda o: (o.call, o.invoke_index))
    assert [[getattr(op, s) for s in Op.FIELDS] for op in parts.get(None, [])] == [
        [getattr(op.replace(id=i), s) for s in Op.FIELDS] for i, op in enumerate(kept)]
    assert [[getattr(op, s) for s in Op.FIELDS] for op in ops] == before


def test_a_prepare_that_keeps_every_op_unnumbered_is_caught(monkeypatch):
    """Mutant: every op is kept as given (a fail op dropped before it leaves its id off by one)."""
    ops = [Op(0, 0, "write", 1, None, 0, 1, "fail"), Op(1, 1, "write", 2, None, 2, 3, "ok")]
    _prepare_renumbers(ops)
    monkeypatch.setattr(Op, "with_id", lambda self, i: self)
    with pytest.raises(AssertionError):
        _prepare_renumbers(ops)
