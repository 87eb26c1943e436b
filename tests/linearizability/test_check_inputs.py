"""``cbchaos check`` input handling: format from content, empty and unparsable histories, --html path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_cbchaos.cli import main
from pytest_cbchaos.history import MalformedHistory
from pytest_cbchaos.linearizability import read_jepsen_log

ILLEGAL_JSONL = "".join(json.dumps(e) + "\n" for e in [
    {"type": "invoke", "process": 0, "f": "write", "value": 1, "time": 0, "index": 0},
    {"type": "ok", "process": 0, "f": "write", "value": 1, "time": 1, "index": 1},
    {"type": "invoke", "process": 0, "f": "read", "value": None, "time": 2, "index": 2},
    {"type": "ok", "process": 0, "f": "read", "value": 2, "time": 3, "index": 3},
])
JEPSEN_OK = ("INFO  jepsen.util - 0\t:invoke\t:write\t3\n"
             "INFO  jepsen.util - 0\t:ok\t:write\t3\n"
             "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
             "INFO  jepsen.util - 1\t:ok\t:read\t3\n")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["check", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


@pytest.mark.parametrize("name", ["h.log", "h.txt", "h.jsonl", "h"])
def test_jsonl_history_is_checked_whatever_its_extension(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    (tmp_path / name).write_text(ILLEGAL_JSONL)
    rc, out, _ = run(capsys, str(tmp_path / name), "--model", "register")
    assert rc == 1 and "\tILLEGAL\t" in out and "ops=2" in out


def test_jepsen_log_is_sniffed_whatever_its_extension(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "h.jsonl").write_text(JEPSEN_OK)
    rc, out, _ = run(capsys, str(tmp_path / "h.jsonl"))
    assert rc == 0 and "model=cas-register ops=2" in out


@pytest.mark.parametrize("content", ["garbage here\n", "\xff\xfe\x00 binary", "hello\n{}\n"])
def test_garbage_exits_4_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         content: str) -> None:
    p = tmp_path / "garbage.log"
    p.write_text(content, encoding="latin-1")
    rc, out, err = run(capsys, str(p))
    assert rc == 4 and out == ""
    assert f"{p}:1: cannot tell the history format" in err


def test_unparsable_jepsen_line_exits_4_unless_skipped(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "h.log"
    p.write_text(JEPSEN_OK + "INFO  jepsen.core - Run complete\n")
    rc, _, err = run(capsys, str(p))
    assert rc == 4 and f"{p}:5: unrecognised line 'INFO  jepsen.core - Run complete'" in err
    assert "--skip-unparsed" in err
    rc, out, _ = run(capsys, str(p), "--skip-unparsed")
    assert rc == 0 and "ops=2" in out
    with pytest.raises(MalformedHistory, match=r"h\.log:5: unrecognised line"):
        read_jepsen_log(p)
    assert len(read_jepsen_log(p, skip_unparsed=True).events) == 4


def test_jsonl_read_as_jepsen_is_an_error_not_an_empty_history(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "h.log"
    p.write_text(ILLEGAL_JSONL)
    rc, out, err = run(capsys, str(p), "--format", "jepsen")
    assert rc == 4 and out == "" and f"{p}:1: unrecognised line" in err


@pytest.mark.parametrize("content", ["", "\n\n", json.dumps(
    {"type": "info", "process": "nemesis", "f": "partition", "value": "start", "time": 0,
     "index": 0}) + "\n"])
def test_history_without_ops_exits_4_unless_allowed(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    content: str) -> None:
    p = tmp_path / "h.jsonl"
    p.write_text(content)
    rc, out, err = run(capsys, str(p))
    assert rc == 4 and out == "" and "no operations" in err and "--allow-empty" in err
    rc, out, _ = run(capsys, str(p), "--allow-empty")
    assert rc == 0 and "ops=0" in out


def test_jepsen_log_without_ops_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "h.log"
    p.write_text("INFO  jepsen.core - Run starting\n")
    rc, _, err = run(capsys, str(p), "--skip-unparsed")
    assert rc == 4 and "no operations in this jepsen history" in err


def test_directory_as_history_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, str(tmp_path))
    assert rc == 4 and "is a directory" in err


@pytest.mark.parametrize("html, several, msg", [
    ("missing-dir/x.html", False, "does not exist"),
    (".", False, "is a directory"),
    ("h.jsonl", True, "is not a directory"),
    ("missing-dir/sub", True, "does not exist"),
])
def test_bad_html_path_exits_4_before_checking(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               html: str, several: bool, msg: str) -> None:
    p = tmp_path / "h.jsonl"
    p.write_text(ILLEGAL_JSONL)
    files = [str(p), str(p)] if several else [str(p)]
    rc, out, err = run(capsys, *files, "--html", str(tmp_path / html))
    assert rc == 4 and out == ""  # no verdict line: rejected before the check ran
    assert f"--html {tmp_path / html}" in err and msg in err


def test_unwritable_html_is_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_cbchaos.linearizability import html

    def refuse(*a: object, **k: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(html, "write_timeline", refuse)
    p = tmp_path / "h.jsonl"
    p.write_text(ILLEGAL_JSONL)
    rc, _, err = run(capsys, str(p), "--html", str(tmp_path / "x.html"))
    assert rc == 4 and "cannot write (Permission denied)" in err
