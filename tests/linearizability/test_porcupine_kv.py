"""Porcupine's kv histories: the reader, ``cbchaos check --format porcupine-kv`` and Porcupine's
verdicts on its six test histories (data/porcupine-kv/, MIT, see LICENSE.md there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_cbchaos.cli import main
from pytest_cbchaos.history import MalformedHistory
from pytest_cbchaos.linearizability import (KVModel, Verdict, check, check_porcupine_kv_log,
                                            read_porcupine_kv)
from pytest_cbchaos.linearizability.porcupine_kv import parse_porcupine_kv_line

DATA = Path(__file__).parent / "data" / "porcupine-kv"
#: Porcupine's own expectations (its TestKv* tests): c*-ok linearizable, c*-bad not
NAMES = ["c01-ok", "c01-bad", "c10-ok", "c10-bad", "c50-ok", "c50-bad"]


def _want(name: str) -> Verdict:
    return Verdict.OK if name.endswith("-ok") else Verdict.ILLEGAL


@pytest.mark.parametrize("name", NAMES)
def test_porcupine_kv_histories_get_porcupines_verdicts(name: str) -> None:
    result = check_porcupine_kv_log(DATA / f"{name}.txt", timeout=60)
    assert result.verdict is _want(name), result.summary()


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
