"""Conformance: every shipped Jepsen etcd log gets Porcupine's verdict (docs/linearizability-design.md#jepsen-logs)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_cbchaos.history import read_jsonl, write_jsonl
from pytest_cbchaos.linearizability import (CasRegisterModel, Verdict, check, check_jepsen_log,
                                            read_jepsen_log)
from pytest_cbchaos.linearizability.jepsen import parse_jepsen_line

EXPECT = {"linearizable": Verdict.OK, "not-linearizable": Verdict.ILLEGAL}


def _verdicts(corpus: Path) -> list[tuple[str, Verdict]]:
    rows = []
    for line in (corpus / "verdicts.tsv").read_text().splitlines():
        if line.strip():
            name, v = line.split("\t")
            rows.append((name, EXPECT[v.strip()]))
    return rows


def test_corpus_verdicts_and_round_trip(corpus: Path, tmp_path: Path) -> None:
    rows = _verdicts(corpus)
    assert len(rows) == 12
    total = 0.0
    for name, want in rows:
        t = time.perf_counter()
        r = check_jepsen_log(corpus / name, timeout=30)
        total += time.perf_counter() - t
        assert r.verdict is want, f"{name}: got {r.verdict}, verdicts.tsv says {want}"
        # parse -> JSONL -> parse gives the same verdict
        out = write_jsonl(read_jepsen_log(corpus / name), tmp_path / f"{name}.jsonl")
        assert check(read_jsonl(out), CasRegisterModel(), timeout=30).verdict is want, name


def test_corpus_counterexamples_for_illegal_logs(corpus: Path) -> None:
    for name, want in _verdicts(corpus):
        if want is not Verdict.ILLEGAL:
            continue
        r = check_jepsen_log(corpus / name, mode="report", timeout=30)
        cx = r.counterexample
        assert cx is not None and cx["first_unplaceable"] is not None, name
        assert cx["longest_prefix"], name
        # the minimal window is itself an illegal prefix no longer than the whole log
        assert cx["minimal_window"] is not None, name


def test_parser_forms_and_ignored_lines() -> None:
    pre = "INFO  jepsen.util - 3\t"
    assert parse_jepsen_line(pre + ":invoke\t:read\tnil") == ("invoke", 3, "read", None)
    assert parse_jepsen_line(pre + ":invoke\t:write\t4") == ("invoke", 3, "write", 4)
    assert parse_jepsen_line(pre + ":invoke\t:cas\t[3 0]") == ("invoke", 3, "cas", [3, 0])
    assert parse_jepsen_line(pre + ":ok\t:cas\t[3 0]") == ("ok", 3, "cas", True)
    assert parse_jepsen_line(pre + ":fail\t:cas\t[3 0]") == ("ok", 3, "cas", False)
    assert parse_jepsen_line(pre + ":ok\t:read\tnil") == ("ok", 3, "read", None)
    assert parse_jepsen_line(pre + ":fail\t:read\t:timed-out") == ("fail", 3, "read", None)
    assert parse_jepsen_line(pre + ":info\t:write\t:timed-out") == ("info", 3, "write", None)
    assert parse_jepsen_line("  INFO jepsen.util -  3   :ok  :write   4  ") == ("ok", 3, "write", 4)
    assert parse_jepsen_line("INFO  jepsen.core - Run complete, writing") is None
    assert parse_jepsen_line(pre + ":ok\t:read\tnil trailing") is None


def test_unpaired_log_names_file(tmp_path: Path) -> None:
    from pytest_cbchaos.history import MalformedHistory
    bad = tmp_path / "bad.log"
    bad.write_text("INFO  jepsen.util - 0\t:ok\t:read\t1\n")
    with pytest.raises(MalformedHistory, match="bad.log"):
        read_jepsen_log(bad)
