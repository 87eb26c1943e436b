"""Porcupine's kv histories: the reader, ``cbchaos check --format porcupine-kv`` and Porcupine's
verdicts on its six test histories (data/porcupine-kv/, MIT, see LICENSE.md there)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kv_events import draw_invoke

from pytest_cbchaos.cli import main
from pytest_cbchaos.history import MalformedHistory
from pytest_cbchaos.history.ops import Op, pair_events
from pytest_cbchaos.linearizability import (KVModel, Verdict, check, check_porcupine_kv_log,
                                            read_porcupine_kv)
from pytest_cbchaos.linearizability.porcupine_kv import (PorcupineKvHistory, pair_kv_events,
                                                         parse_porcupine_kv_line)

DATA = Path(__file__).parent / "data" / "porcupine-kv"
#: Porcupine's own expectations (its TestKv* tests): c*-ok linearizable, c*-bad not
NAMES = ["c01-ok", "c01-bad", "c10-ok", "c10-bad", "c50-ok", "c50-bad"]


def _want(name: str) -> Verdict:
    return Verdict.OK if name.endswith("-ok") else Verdict.ILLEGAL


@pytest.mark.parametrize("name", NAMES)
def test_porcupine_kv_histories_get_porcupines_verdicts(name: str) -> None:
    result = check_porcupine_kv_log(DATA / f"{name}.txt", timeout=60)
    assert result.verdict is _want(name), result.summary()


def test_equal_slices_bound_the_work_before_the_first_illegal_partition() -> None:
    """c50-bad's partitions are searched round-robin: no partition gets more than the illegal
    one's steps rounded up to a slice (doubling slices gave the others up to twice as many)."""
    from pytest_cbchaos.linearizability.checker import SLICE
    result = check_porcupine_kv_log(DATA / "c50-bad.txt", timeout=60)
    (bad,) = result.failing()
    cap = -(-bad.steps // SLICE) * SLICE
    assert [k for k, p in result.partitions.items() if p.steps > cap] == []
    assert sum(p.steps > 0 for p in result.partitions.values()) > 1  # round-robin, not one by one


def test_absent_key_reads_as_empty_string() -> None:
    """Porcupine's kv starts every key at ``""``: under the kit's plain kv (nil) its correct
    histories would be false violations, so the initial value is what makes them legal."""
    history = read_porcupine_kv(DATA / "c01-ok.txt")
    assert check(history, KVModel(), timeout=10).verdict is Verdict.ILLEGAL
    assert check(history, KVModel(initial=""), timeout=10).verdict is Verdict.OK


@pytest.mark.parametrize("fast_path", [True, False])
def test_initial_value_in_the_register_fast_path_and_the_search(fast_path: bool) -> None:
    from pytest_cbchaos.history.ops import Op
    ops = [Op(0, 0, "read", None, "", 0, 1, "ok", key="k"),
           Op(1, 1, "write", "a", None, 2, 3, "ok", key="k"),
           Op(2, 2, "read", None, "a", 4, 5, "ok", key="k")]
    result = check(ops, KVModel(initial=""), fast_path=fast_path)
    assert result.verdict is Verdict.OK
    assert result.partitions["k"].reason.startswith("decided by zones") is fast_path
    nil_read = [ops[0].replace(output=None)] + ops[1:]
    assert check(nil_read, KVModel(initial=""), fast_path=fast_path).verdict is Verdict.ILLEGAL
    assert check(ops, KVModel(), fast_path=fast_path).verdict is Verdict.ILLEGAL


def test_line_forms() -> None:
    p = "{:process 3, :type "
    assert parse_porcupine_kv_line(p + ':invoke, :f :get, :key "7", :value nil}') == (
        "invoke", 3, "read", "7", None)
    assert parse_porcupine_kv_line(p + ':ok, :f :get, :key "7", :value "x 0 1 y"}\n') == (
        "ok", 3, "read", "7", "x 0 1 y")
    assert parse_porcupine_kv_line(p + ':invoke, :f :put, :key "k", :value ""}') == (
        "invoke", 3, "write", "k", "")
    assert parse_porcupine_kv_line(p + ':info, :f :append, :key "k", :value :timed-out}') == (
        "info", 3, "append", "k", None)
    assert parse_porcupine_kv_line(p + ':ok, :f :cas, :key "k", :value nil}') is None
    assert parse_porcupine_kv_line('{"type": "ok"}') is None


def test_completion_value_of_a_write_is_ignored_and_input_kept(tmp_path: Path) -> None:
    f = tmp_path / "h.txt"
    f.write_text('{:process 0, :type :invoke, :f :append, :key "a", :value "x"}\n'
                 '{:process 0, :type :ok, :f :append, :key "a", :value "other"}\n')
    (op,) = read_porcupine_kv(f).ops()
    assert (op.f, op.key, op.input, op.output, op.status) == ("append", "a", "x", None, "ok")


def test_write_without_value_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "h.txt"
    f.write_text('{:process 0, :type :invoke, :f :put, :key "a", :value nil}\n')
    with pytest.raises(MalformedHistory, match=r"h\.txt:1: write of key 'a' has no string value"):
        read_porcupine_kv(f)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["check", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def test_cli_sniffs_the_format_and_uses_porcupines_initial_value(
        capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, str(DATA / "c01-ok.txt"), str(DATA / "c01-bad.txt"))
    lines = out.splitlines()
    assert rc == 1
    assert "c01-ok.txt\tOK\t" in lines[0] and "c01-bad.txt\tILLEGAL\t" in lines[1]
    assert "first unplaceable:" in lines[1]
    rc, out, _ = _run(capsys, str(DATA / "c01-ok.txt"), "--format", "porcupine-kv", "--model", "kv")
    assert rc == 0, out


def test_cli_unrecognised_line_exits_4_naming_it_unless_skipped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "h.txt"
    f.write_text('{:process 0, :type :invoke, :f :get, :key "a", :value nil}\n'
                 "{:process 0, :type :ok, :f :get, :value \"\"}\n"
                 '{:process 0, :type :ok, :f :get, :key "a", :value ""}\n')
    rc, _, err = _run(capsys, str(f))
    assert rc == 4 and "h.txt:2: unrecognised line" in err and "Porcupine kv line" in err
    rc, out, _ = _run(capsys, str(f), "--skip-unparsed")
    assert rc == 0 and "\tOK\t" in out


def test_cli_timeout_is_the_counterexamples_deadline_too(
        counterexample_deadlines: list[float | None], capsys: pytest.CaptureFixture[str]) -> None:
    """``--timeout S`` is one budget for the file's search and its counterexample."""
    rc, out, _ = _run(capsys, str(DATA / "c01-bad.txt"), "--timeout", "5")
    assert rc == 1 and "first unplaceable:" in out
    assert counterexample_deadlines == [105.0]


def test_counterexample_names_the_key_and_its_value() -> None:
    """The search holds one key's bare value; the counterexample still reads as the kv state."""
    cx = check_porcupine_kv_log(DATA / "c01-bad.txt", mode="report").counterexample
    first = cx["first_unplaceable"]
    assert first["describe"] == "read[7]() -> 'x 0 0 y'"
    assert first["state"] == "(('7', 'x 0 0 yx 0 3 y'),)"
    assert cx["attempts"][0]["explain"] == "key '7': read 'x 0 0 y', register holds 'x 0 0 yx 0 3 y'"
    assert cx["longest_prefix"][-1]["state_after"] == "(('7', 'x 0 0 yx 0 3 y'),)"


def test_append_attempt_is_explained_not_called_unknown() -> None:
    from pytest_cbchaos.history.ops import Op
    op = Op(0, 0, "append", "b", None, 0, 1, "ok", key="k")
    text = KVModel().explain((("k", "a"),), op)
    assert text == "key 'k': append[k]('b') -> nil is legal in state (('k', 'a'),)"


def test_a_kv_subclass_is_searched_with_its_own_step() -> None:
    """Only ``KVModel`` itself narrows its search state: a mutant's ``step`` must be the one
    judged (here one that loses every append, so a correct history is ILLEGAL)."""
    class LosesAppends(KVModel):
        def step(self, state: tuple, op: object) -> tuple[bool, tuple]:
            if getattr(op, "f") == "append":
                return True, state
            return KVModel.step(self, state, op)  # type: ignore[arg-type]

    history = read_porcupine_kv(DATA / "c01-ok.txt")
    assert check(history, KVModel(initial=""), timeout=10).verdict is Verdict.OK
    assert check(history, LosesAppends(initial=""), timeout=10).verdict is Verdict.ILLEGAL


@st.composite
def kv_events(draw) -> tuple[list[dict], bool]:
    """Events in the reader's shape (often well-formed), and whether one was then edited."""
    events: list[dict] = []
    pending: dict[int, dict] = {}
    for line in range(1, draw(st.integers(0, 14)) + 1):
        p = draw(st.integers(0, 2))
        if p in pending:
            inv = pending.pop(p)
            typ = draw(st.sampled_from(["ok", "ok", "fail", "info"]))
            value = draw(st.sampled_from(["", "x", None])) if inv["f"] == "read" else None
            events.append({"type": typ, "process": p, "f": inv["f"], "key": inv["key"],
                           "value": value, "time": line, "index": line})
        else:
            inv = pending[p] = draw_invoke(draw, st, p, line)
            events.append(inv)
    edited = bool(events) and draw(st.booleans())
    if edited:
        ev = events[draw(st.integers(0, len(events) - 1))]
        field, value = draw(st.sampled_from([
            ("process", 0), ("process", "nemesis"), ("process", -1), ("type", "invoke"),
            ("type", "ok"), ("type", "done"), ("f", "write"), ("f", 3), ("time", 0),
            ("time", 0.5), ("index", 99), ("index", 0), ("value", "z"), ("error", "e")]))
        ev[field] = value
    return events, edited


def _fields(ops) -> list[tuple]:
    return [tuple(getattr(op, s) for s in Op.FIELDS) for op in ops]


@given(kv_events(), st.sampled_from([None, lambda f: f == "read"]))
def test_light_kv_pairing_pairs_as_the_general_one_or_defers_to_it(case, read_only) -> None:
    """The lighter pairing of a porcupine-kv history gives the general pairing's ops, or None
    (the general pairing then judges the events): never other ops, and None only for events
    edited since they were read (or that the general pairing rejects)."""
    events, edited = case
    try:
        want = pair_events(events, read_only)
    except MalformedHistory:
        want = None
    got = pair_kv_events(events, read_only)
    if got is not None:
        assert want is not None and _fields(got) == _fields(want)
    elif not edited:
        assert want is None
    if want is not None:
        assert _fields(PorcupineKvHistory(events).ops(read_only)) == _fields(want)


def test_an_edited_history_is_judged_by_the_general_pairing(tmp_path: Path) -> None:
    history = read_porcupine_kv(DATA / "c01-bad.txt")
    assert isinstance(history, PorcupineKvHistory)
    history.events = [dict(ev) for ev in history.events]  # the events as read are read-only
    history.events[1]["time"] = 0  # process 0's completion before its invoke
    with pytest.raises(MalformedHistory, match="goes backwards"):
        check(history, KVModel(initial=""))


def _reader_events() -> list[dict]:
    rows = [("invoke", 0, "append", "a", "x"), ("invoke", 1, "read", "a", None),
            ("ok", 0, "append", "a", None), ("ok", 1, "read", "a", "x"),
            ("invoke", 2, "write", "b", "y"), ("info", 2, "write", "b", None),
            ("invoke", 0, "read", "b", None)]
    return [{"type": t, "process": p, "f": f, "key": k, "value": v, "time": n, "index": n}
            for n, (t, p, f, k, v) in enumerate(rows, 1)]


@pytest.mark.parametrize("at, edit", [
    (3, {"f": "write"}), (2, {"time": 1, "index": 1}), (1, {"time": 2.5, "index": 2.5}),
    (3, {"error": "timeout"}), (0, {"process": "nemesis"}), (0, {"process": -1}),
    (1, {"type": "done"}), (4, {"f": 3}), (6, {"process": 2}), (2, {"process": 1}),
    (3, {"value": "other"}), (1, {"time": 9}), (0, {"type": "ok"}), (3, {"type": "done"}),
    ((0, 2), {"process": -1}), ((0, 2), {"process": "nemesis"}), ((4, 5), {"f": 3}),
    (1, {"index": 99})])
def test_light_kv_pairing_on_each_kind_of_edit(at: int | tuple[int, ...], edit: dict) -> None:
    """Every edit the reader never makes: the lighter pairing gives the general pairing's ops
    or defers (None), and a check of the edited history says what the general pairing says."""
    events = _reader_events()
    for i in at if isinstance(at, tuple) else (at,):
        events[i].update(edit)
    try:
        want = _fields(pair_events(events, KVModel().read_only))
    except MalformedHistory:
        want = None
    got = pair_kv_events(events, KVModel().read_only)
    assert got is None or _fields(got) == want
    if want is None:
        with pytest.raises(MalformedHistory):
            check(PorcupineKvHistory(events), KVModel(initial=""))
    assert pair_kv_events(_reader_events(), KVModel().read_only) is not None
