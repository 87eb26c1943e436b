"""Value normalisation (docs/linearizability.md, Values): Redis replies bytes for what was written
as an int; the models must not call that ILLEGAL, and values they cannot compare are input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lin_events import ev

from pytest_cbchaos.cli import main
from pytest_cbchaos.history import MalformedHistory, read_jsonl
from pytest_cbchaos.linearizability import (CasRegisterModel, CounterModel, KVModel, RegisterModel,
                                            SetModel, ValueTypeMismatch, Verdict, check_events)


def verdict(rows, model) -> Verdict:
    return check_events(ev(rows), model).verdict


def write_then_read(written, read, key=None):
    return [(0, 0, "invoke", "write", written, key), (1, 0, "ok", "write", None, key),
            (2, 1, "invoke", "read", None, key), (3, 1, "ok", "read", read, key)]


@pytest.mark.parametrize("model", [RegisterModel(), CasRegisterModel(), KVModel()])
@pytest.mark.parametrize("written, read", [(3, b"3"), (3, "3"), ("3", b"3"), (b"x", "x"),
                                           (1.5, b"1.5"), ("é", "é".encode())])
def test_read_of_the_redis_string_form_matches_the_write(model, written, read) -> None:
    assert verdict(write_then_read(written, read, "k"), model) is Verdict.OK


@pytest.mark.parametrize("model", [RegisterModel(), CasRegisterModel(), KVModel()])
@pytest.mark.parametrize("written, read", [(3, b"4"), (3, "03"), (3, b"3.0"), (b"\xff", "\xff")])
def test_different_strings_stay_illegal(model, written, read) -> None:
    assert verdict(write_then_read(written, read, "k"), model) is Verdict.ILLEGAL


def test_cas_compares_normalised_values() -> None:
    rows = [(0, 0, "invoke", "write", 3), (1, 0, "ok", "write", None),
            (2, 0, "invoke", "cas", [b"3", 4]), (3, 0, "ok", "cas", True),
            (4, 0, "invoke", "read", None), (5, 0, "ok", "read", "4")]
    assert verdict(rows, CasRegisterModel()) is Verdict.OK
    rows[3] = (3, 0, "ok", "cas", False)  # compare matched, so a failed cas is illegal
    assert verdict(rows, CasRegisterModel()) is Verdict.ILLEGAL


@pytest.mark.parametrize("model", [RegisterModel(), CasRegisterModel(), KVModel()])
@pytest.mark.parametrize("written, read", [([1, 2], b"[1, 2]"), ({"a": 1}, "{'a': 1}"), (True, b"1")])
def test_unnormalisable_type_mismatch_is_an_input_error(model, written, read) -> None:
    with pytest.raises(ValueTypeMismatch, match=r"cannot compare written value .* at event index 0 "
                                                 r"\(process 0, write key 'k'\) with read value"):
        check_events(ev(write_then_read(written, read, "k")), model)


def test_counter_reads_decimal_strings() -> None:
    rows = [(0, 0, "invoke", "incr", None), (1, 0, "ok", "incr", 1),
            (2, 0, "invoke", "incr", b"2"), (3, 0, "ok", "incr", 3),
            (4, 1, "invoke", "read", None), (5, 1, "ok", "read", b"3")]
    assert verdict(rows, CounterModel()) is Verdict.OK
    rows[5] = (5, 1, "ok", "read", "4")
    assert verdict(rows, CounterModel()) is Verdict.ILLEGAL
    rows[5] = (5, 1, "ok", "read", "three")
    with pytest.raises(ValueTypeMismatch, match=r"counter: read value 'three' \(str\) at event index 4"):
        check_events(ev(rows), CounterModel())


def test_set_elements_are_normalised() -> None:
    rows = [(0, 0, "invoke", "add", 3), (1, 0, "ok", "add", None),
            (2, 0, "invoke", "add", "x"), (3, 0, "ok", "add", None),
            (4, 1, "invoke", "read", None), (5, 1, "ok", "read", {b"3", b"x"})]
    assert verdict(rows, SetModel()) is Verdict.OK
    rows[5] = (5, 1, "ok", "read", [b"3"])
    assert verdict(rows, SetModel()) is Verdict.ILLEGAL
    rows[5] = (5, 1, "ok", "read", b"3")
    with pytest.raises(ValueTypeMismatch, match="expected a collection"):
        check_events(ev(rows), SetModel())


def test_cli_type_mismatch_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "h.jsonl"
    p.write_text("".join(json.dumps(e) + "\n" for e in ev(write_then_read([1], "[1]", "k"))))
    assert main(["check", str(p)]) == 4
    err = capsys.readouterr().err
    assert "kv key 'k': cannot compare written value [1] (list)" in err and "Traceback" not in err


def recording_example() -> str:
    """The first python block under "## Recording" in docs/linearizability.md."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "linearizability.md").read_text()
    section = doc[doc.index("## Recording"):]
    return section[section.index("```python\n") + 10:section.index("```\n", section.index("```python"))]


def test_recording_example_from_the_docs(cbchaos_redis, cbchaos_faults, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/linearizability.md "Recording", executed as written against real Redis."""
    monkeypatch.chdir(tmp_path)
    ns = {"cbchaos_redis": cbchaos_redis, "cbchaos_faults": cbchaos_faults}
    exec(compile(recording_example(), "docs/linearizability.md#recording", "exec"), ns)
    rec = ns["rec"]
    assert rec.events()[-1]["value"] == b"3"  # what Redis replied
    assert check_events(rec.events(), KVModel()).verdict is Verdict.OK
    assert check_events(read_jsonl(tmp_path / "history.jsonl").events, KVModel()).verdict is Verdict.OK
    assert main(["check", str(tmp_path / "history.jsonl")]) == 0


@pytest.mark.parametrize("model, rows, msg", [
    (RegisterModel(), [(0, 0, "invoke", "get", None), (1, 0, "ok", "get", 1)],
     r"register: unknown operation 'get' at event index 0 \(process 0\); expected one of read, write"),
    (KVModel(), [(0, 0, "invoke", "cas", 5, "k"), (1, 0, "ok", "cas", True, "k")],
     r"kv key 'k': cas value 5 at event index 0 \(process 0\); expected \[old, new\]"),
    (CounterModel(), [(0, 0, "invoke", "add", 1), (1, 0, "ok", "add", None)],
     "counter: unknown operation 'add'"),
    (SetModel(), [(0, 0, "invoke", "incr", 1), (1, 0, "ok", "incr", None)],
     "set: unknown operation 'incr'"),
])
def test_unknown_operations_and_bad_cas_are_input_errors(model, rows, msg) -> None:
    with pytest.raises(MalformedHistory, match=msg):
        check_events(ev(rows), model)


@pytest.mark.parametrize("timeout", ["nan", "inf", "-1", "0"])
def test_cli_rejects_non_finite_timeout(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        timeout: str) -> None:
    p = tmp_path / "h.jsonl"
    p.write_text("".join(json.dumps(e) + "\n" for e in ev(write_then_read(1, 1, "k"))))
    assert main(["check", str(p), "--timeout", timeout]) == 4
    assert "expected a finite number > 0" in capsys.readouterr().err


def test_non_finite_values_and_times_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueTypeMismatch, match=r"register: written value nan at event index 0 .*"
                                                 r"expected a finite number"):
        check_events(ev(write_then_read(float("nan"), float("nan"))), RegisterModel())
    p = tmp_path / "h.jsonl"
    p.write_text('{"type":"invoke","process":0,"f":"write","value":NaN,"time":0,"index":0}\n')
    with pytest.raises(MalformedHistory, match=r"h\.jsonl:1: NaN is not a number JSON allows"):
        read_jsonl(p)
    p.write_text('{"type":"invoke","process":0,"f":"write","value":1,"time":Infinity,"index":0}\n')
    with pytest.raises(MalformedHistory, match=r"h\.jsonl:1: Infinity"):
        read_jsonl(p)
    with pytest.raises(MalformedHistory, match=r"key 'time' = inf; expected a finite number"):
        check_events([{"type": "invoke", "process": 0, "f": "read", "value": None,
                       "time": float("inf"), "index": 0}], RegisterModel())


def test_counter_read_of_nil_is_zero_and_unhashable_set_elements_are_errors() -> None:
    rows = [(0, 1, "invoke", "read", None), (1, 1, "ok", "read", None),
            (2, 0, "invoke", "incr", None), (3, 0, "ok", "incr", 1),
            (4, 1, "invoke", "read", None), (5, 1, "ok", "read", None)]
    assert verdict(rows[:4], CounterModel()) is Verdict.OK
    assert verdict(rows, CounterModel()) is Verdict.ILLEGAL  # nil after an incr: the key was lost
    add = [(0, 0, "invoke", "add", {"a": 1}), (1, 0, "ok", "add", None)]
    with pytest.raises(ValueTypeMismatch, match=r"set: added element \{'a': 1\} \(dict\) at event "
                                                 r"index 0 \(process 0\) is not hashable"):
        check_events(ev(add), SetModel())
