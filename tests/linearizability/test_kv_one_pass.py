"""Shortcuts for kv histories decide exactly as the general path (docs/linearizability-design.md#performance):
a Porcupine kv history's partitions built in one pass, and the replay of partitions no order of
which can be illegal (``never_illegal``). Each has a mutant the agreement check catches."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from kv_events import draw_invoke

from pytest_cbchaos.history import History
from pytest_cbchaos.history.ops import INF, MalformedHistory, Op, pair_events
from pytest_cbchaos.linearizability import KVModel, Verdict, check
from pytest_cbchaos.linearizability import porcupine_kv
from pytest_cbchaos.linearizability.checker import prepare
from pytest_cbchaos.linearizability.models import _OneKey
from pytest_cbchaos.linearizability.porcupine_kv import PorcupineKvHistory, read_porcupine_kv

VALUES = ["", "x", "y", "xy", "yx"]


class GeneralKV(KVModel):
    """A subclass: the general pairing and ``prepare``, and the search with ``KVModel.step`` on
    the whole map (no one-pass partitions, no key model, no replay of never-illegal partitions)."""


@st.composite
def reader_events(draw) -> list[dict]:
    """Concurrent events in ``read_porcupine_kv``'s shape: up to 3 clients at once, a new
    process id after a crashed op, fail/info completions and ops left pending."""
    events: list[dict] = []
    pending: dict[int, dict] = {}
    free = [0, 1, 2]
    next_p = 3
    for line in range(1, draw(st.integers(0, 16)) + 1):
        slot = draw(st.integers(0, 2))
        p = free[slot]
        if p in pending:
            inv = pending.pop(p)
            typ = draw(st.sampled_from(["ok", "ok", "ok", "fail", "info"]))
            value = draw(st.sampled_from(VALUES + [None])) if inv["f"] == "read" and typ == "ok" else None
            events.append({"type": typ, "process": p, "f": inv["f"], "key": inv["key"],
                           "value": value, "time": line, "index": line})
            if typ == "info":
                free[slot], next_p = next_p, next_p + 1
        else:
            inv = pending[p] = draw_invoke(draw, st, p, line)
            events.append(inv)
    return events


def _rows(rows: list[tuple]) -> list[dict]:
    """``(type, process, f, key, value)`` rows as reader events (time = index = line)."""
    return [{"type": t, "process": p, "f": f, "key": k, "value": v, "time": n, "index": n}
            for n, (t, p, f, k, v) in enumerate(rows, 1)]


#: a fail op first on key "a" and a crashed read on "b": both leave their partitions
WITH_DROPS = _rows([("invoke", 0, "write", "a", "x"), ("fail", 0, "write", "a", None),
                    ("invoke", 1, "read", "b", None), ("invoke", 0, "append", "c", "y"),
                    ("info", 1, "read", "b", None), ("ok", 0, "append", "c", None),
                    ("invoke", 0, "append", "a", "x"), ("ok", 0, "append", "a", None)])
#: key "a": a read of "x" concurrent with the append, but the write of "y" returned before it
STALE_READ = _rows([("invoke", 0, "write", "a", "y"), ("ok", 0, "write", "a", None),
                    ("invoke", 0, "append", "a", "x"), ("invoke", 1, "read", "a", None),
                    ("ok", 1, "read", "a", "x"), ("ok", 0, "append", "a", None)])

#: key "a": a read called before the append it reads, concurrent with it (legal; call order is
#: not; an append keeps the register fast path out)
EARLY_READ = _rows([("invoke", 0, "read", "a", None), ("invoke", 1, "append", "a", "x"),
                    ("ok", 1, "append", "a", None), ("ok", 0, "read", "a", "x")])


def _fields(ops) -> list[tuple]:
    return [tuple(getattr(op, s) for s in Op.FIELDS) for op in ops]


def assert_same_partitions(events: list[dict], history: PorcupineKvHistory | None = None) -> None:
    """The one pass (over ``history``, default: the events as built in memory) gives
    ``prepare(pair_events(...))``'s partitions (order, ids, fields) and the pairing's op list; it
    declines only events the general pairing rejects."""
    model = KVModel(initial="")
    try:
        want = prepare(pair_events(events, model.read_only), model)
    except MalformedHistory:
        want = None
    got = (history or PorcupineKvHistory(events)).one_pass_partitions(model)
    if got is None:
        assert want is None
        return
    parts, all_ops = got
    assert want is not None
    assert list(parts) == list(want)
    assert {k: _fields(v) for k, v in parts.items()} == {k: _fields(v) for k, v in want.items()}
    assert _fields(all_ops()) == _fields(pair_events(events, model.read_only))


def assert_same_verdicts(history: History | list[Op], events_or_ops: list) -> None:
    """Every partition's verdict (report mode decides them all) as the general path's."""
    fast = check(history, KVModel(initial=""), mode="report", timeout=None)
    general = check(History(events_or_ops) if isinstance(history, History) else events_or_ops,
                    GeneralKV(initial=""), mode="report", timeout=None)
    assert fast.verdict is general.verdict
    assert {k: p.verdict for k, p in fast.partitions.items()} == {
        k: p.verdict for k, p in general.partitions.items()}
    assert _fields(fast.ops) == _fields(general.ops)


@given(reader_events())
@example(WITH_DROPS)
@example(STALE_READ)
@example(EARLY_READ)
def test_one_pass_partitions_and_verdicts_are_the_general_paths(events) -> None:
    assert_same_partitions(events)
    assert_same_verdicts(PorcupineKvHistory(events), events)


_F_NAMES = {"read": "get", "write": "put", "append": "append"}


def read_back(events: list[dict], directory: str) -> PorcupineKvHistory:
    """``events`` written as a Porcupine kv file and read: the reader's own (trusted) history."""
    path = Path(directory) / "history.txt"
    path.write_text("".join(
        f'{{:process {e["process"]}, :type :{e["type"]}, :f :{_F_NAMES[e["f"]]}, :key "{e["key"]}", '
        f':value {"nil" if e["value"] is None else chr(34) + e["value"] + chr(34)}}}\n' for e in events))
    history = read_porcupine_kv(path)
    assert isinstance(history, PorcupineKvHistory) and history._as_read() is not None
    assert [dict(e) for e in history.events] == events
    assert history.as_read.rows == tuple(map(porcupine_kv._FIELDS, events))  # type: ignore[union-attr]
    return history


@given(reader_events())
@example(WITH_DROPS)
@example(STALE_READ)
@example(EARLY_READ)
def test_the_readers_own_events_pair_and_decide_as_the_general_path(events) -> None:
    """The pass over events as read (fields read once by the reader, shape checks skipped)."""
    with tempfile.TemporaryDirectory() as d:
        history = read_back(events, d)
        assert_same_partitions(events, history)
        assert_same_verdicts(history, events)


def test_events_as_read_are_read_only_and_a_replaced_list_is_checked_again(tmp_path: Path) -> None:
    """A read history's events refuse edits (saying how to copy them); a history given other
    events is judged on those, not on the fields read with the old ones."""
    history = read_back(STALE_READ, str(tmp_path))
    assert check(history, KVModel(initial="")).verdict is Verdict.ILLEGAL
    with pytest.raises(TypeError, match=r"read-only: edit a copy \(History\(\[dict\(ev\)"):
        history.events[4]["value"] = "yx"
    edited = [dict(e) for e in history.events]
    edited[4]["value"] = "yx"  # the concurrent read now sees the write, then the append
    history.events = edited
    assert history._as_read() is None
    assert check(history, KVModel(initial="")).verdict is Verdict.OK


def test_fields_read_in_another_order_than_the_pass_reads_them_are_caught(tmp_path: Path) -> None:
    """Mutant: the reader records each event's key where the pass reads its value."""
    history = read_back(STALE_READ, str(tmp_path))
    rows = history.as_read.rows  # type: ignore[union-attr]
    history.as_read = history.as_read._replace(rows=tuple(r[:5] + (r[6], r[5]) for r in rows))  # type: ignore[union-attr]
    with pytest.raises(AssertionError):
        assert_same_partitions(STALE_READ, history)


def test_fields_read_with_replaced_events_are_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: the fields read with the reader's events are trusted for any events."""
    monkeypatch.setattr(PorcupineKvHistory, "_as_read", lambda self: self.as_read)
    with pytest.raises(AssertionError):
        test_events_as_read_are_read_only_and_a_replaced_list_is_checked_again(tmp_path)


def test_examples_cover_both_verdicts() -> None:
    assert check(PorcupineKvHistory(WITH_DROPS), KVModel(initial="")).verdict is Verdict.OK
    assert check(PorcupineKvHistory(STALE_READ), KVModel(initial="")).verdict is Verdict.ILLEGAL
    assert check(PorcupineKvHistory(EARLY_READ), KVModel(initial="")).verdict is Verdict.OK


def test_a_one_pass_that_keeps_fail_ops_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: the pass reports no dropped op, so fail ops and crashed reads stay in their
    partitions (and an emptied partition stays)."""
    real = porcupine_kv._kv_pass

    def keeps_fails(*a, **kw):
        got = real(*a, **kw)
        return got and (got[0], False)

    monkeypatch.setattr(porcupine_kv, "_kv_pass", keeps_fails)
    with pytest.raises(AssertionError):
        assert_same_partitions(WITH_DROPS)


def test_the_general_pairing_judges_events_the_pass_declines() -> None:
    events = _rows([("invoke", 0, "write", "a", "x"), ("ok", 1, "write", "a", None)])
    assert PorcupineKvHistory(events).one_pass_partitions(KVModel(initial="")) is None
    with pytest.raises(MalformedHistory, match="without a pending invoke"):
        check(PorcupineKvHistory(events), KVModel(initial=""))
    cas = _rows([("invoke", 0, "cas", "a", ["", "x"]), ("ok", 0, "cas", "a", True)])
    assert PorcupineKvHistory(cas).one_pass_partitions(KVModel(initial="")) is None  # not the reader's ops
    assert PorcupineKvHistory(cas).one_pass_partitions(GeneralKV(initial="")) is None


@st.composite
def key_ops(draw) -> list[Op]:
    """One key's ops in call order, ids 0..n-1: reads, writes, appends and cas, some crashed."""
    ops: list[Op] = []
    t = 0
    for i in range(draw(st.integers(1, 7))):
        t += draw(st.integers(0, 2))
        f = draw(st.sampled_from(["read", "write", "append", "cas"]))
        crashed = draw(st.integers(0, 3)) == 0
        inp = (None if f == "read" else [draw(st.sampled_from(VALUES)), draw(st.sampled_from(VALUES))]
               if f == "cas" else draw(st.sampled_from(["x", "y"])))
        out = (draw(st.sampled_from(VALUES)) if f == "read" else draw(st.booleans()) if f == "cas" else None)
        ret = INF if crashed else t + draw(st.integers(0, 4))
        ops.append(Op(i, i, f, inp, out, t, ret, "info" if crashed else "ok", "k", 2 * i,
                      None if crashed else 2 * i + 1))
    return ops


def _never_illegal_kinds(ops: list[Op]) -> list[Op]:
    """The ops ``never_illegal`` admits: writes, appends, crashed reads and cas."""
    return [op.replace(id=i) for i, op in enumerate(
        o for o in ops if o.f in ("write", "append") or o.unknown)]


@given(key_ops())
def test_never_illegal_partitions_are_linearizable_and_replayed_as_the_search_decides(ops) -> None:
    model = _OneKey("k", "")
    admitted = _never_illegal_kinds(ops)
    assert model.never_illegal(admitted)
    if admitted:
        assert check(admitted, GeneralKV(initial=""), timeout=None).verdict is Verdict.OK
    assert_same_verdicts(ops, ops)  # whichever way ``never_illegal`` answers on the mixture


def test_never_illegal_refuses_reads_and_completed_cas() -> None:
    read = Op(0, 0, "read", None, "x", 0, 1, "ok", "k", 0, 1)
    cas = Op(0, 0, "cas", ["", "x"], True, 0, 1, "ok", "k", 0, 1)
    assert not _OneKey("k", "").never_illegal([read])
    assert not _OneKey("k", "").never_illegal([cas])
    assert _OneKey("k", "").never_illegal([cas.replace(status="info", ret=INF)])


def test_a_never_illegal_that_admits_reads_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: only cas counts as refusable; the read called before the append it reads is then
    replayed in call order, before that append: a false ILLEGAL."""
    monkeypatch.setattr(_OneKey, "never_illegal",
                        lambda self, ops: all(op.f != "cas" or op.unknown for op in ops))
    with pytest.raises(AssertionError):
        assert_same_verdicts(PorcupineKvHistory(EARLY_READ), EARLY_READ)
