"""The marker's check without pytest (linearizability/recorded.py): a check with nothing to check fails,
an illegal history fails with its artifacts, UNKNOWN follows the setting."""

from __future__ import annotations

from pathlib import Path

from pytest_cbchaos.faults.journal import FaultJournal
from pytest_cbchaos.history import Recorder
from pytest_cbchaos.linearizability.recorded import CheckSettings, judge_recorded, no_history


def _settings(tmp_path: Path, keep: str = "failed") -> CheckSettings:
    return CheckSettings(timeout=5.0, max_cache=100_000, keep=keep, artifacts=tmp_path, on_unknown="fail")


def _recorder(reads: list[object]) -> Recorder:
    rec = Recorder(1, journal=FaultJournal())
    rec.invoke(0, "write", 1).ok()
    for v in reads:
        rec.invoke(0, "read").ok(v)
    return rec


def test_a_legal_history_passes_and_keeps_nothing(tmp_path: Path) -> None:
    j = judge_recorded(_recorder([1]), "cas-register", nodeid="t::ok", settings=_settings(tmp_path))
    assert (j.verdict, j.fail, j.skip, j.ops, j.artifacts) == ("ok", None, None, 2, {})


def test_an_illegal_history_fails_with_its_artifacts(tmp_path: Path) -> None:
    j = judge_recorded(_recorder([2]), "cas-register", nodeid="t::bad", settings=_settings(tmp_path))
    assert j.verdict == "illegal" and j.fail is not None and j.fail.startswith("history is not linearizable")
    assert Path(j.artifacts["timeline"]).is_file() and Path(j.artifacts["history"]).is_file()


def test_nothing_to_check_is_never_a_pass(tmp_path: Path) -> None:
    assert no_history("t::x").fail is not None and no_history("t::x").report
    j = judge_recorded(Recorder(1), "cas-register", nodeid="t::empty", settings=_settings(tmp_path))
    assert (j.verdict, j.ops) == ("unknown", 0) and "observed 0 operations" in (j.fail or "")
    allowed = judge_recorded(Recorder(1), "cas-register", nodeid="t::empty", settings=_settings(tmp_path),
                             allow_empty=True)
    assert allowed.fail is None and allowed.ops is None


def test_an_unknown_model_is_a_usage_error_without_a_check(tmp_path: Path) -> None:
    j = judge_recorded(_recorder([1]), "no-such-model", nodeid="t::m", settings=_settings(tmp_path))
    assert not j.report and "no-such-model" in (j.fail or "")
