"""The mutation bench's own bookkeeping (docs/mutants.md#mutation-score): how mutmut's exit codes and the
exclusions file become the score. The bench itself runs mutmut for minutes and is not part of the suite."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "bench_mutation.py"
_spec = importlib.util.spec_from_file_location("bench_mutation", _PATH)
assert _spec and _spec.loader
bm = importlib.util.module_from_spec(_spec)
sys.modules["bench_mutation"] = bm  # dataclasses look their module up by name
_spec.loader.exec_module(bm)

WD = "pytest_cbchaos.recovery.watchdog.xǁWatchdogǁ"


def test_function_of_reads_mutmut_names() -> None:
    assert bm.function_of(WD + "_check_stall__mutmut_57") == "Watchdog._check_stall"
    assert bm.function_of("pytest_cbchaos.breaker.kernel.x__push__mutmut_3") == "_push"


def test_tally_counts_killed_excludes_listed_survivors_and_reports_stale_exclusions() -> None:
    codes = {WD + "f__mutmut_1": 1, WD + "f__mutmut_2": 36, WD + "f__mutmut_3": -11,  # killed, timeout, crash
             WD + "f__mutmut_4": 0, WD + "f__mutmut_5": 0, WD + "f__mutmut_6": 33}  # survived x2, no tests
    lines = {WD + "f__mutmut_4": "x = 1", WD + "f__mutmut_5": "y = 2", WD + "f__mutmut_6": "z = 3"}
    excl = [{"function": "Watchdog.f", "mutant": "x = 1", "why": "w"},
            {"function": "Watchdog.f", "mutant": "gone = 0", "why": "w"},
            {"function": "Watchdog.g", "mutant": "y = 2", "why": "same line, other function"}]
    score = bm.Score("m")
    bm.tally(score, codes, excl, lines.__getitem__)
    assert (score.killed, score.total, score.counted) == (3, 6, 5)
    assert score.excluded == [(WD + "f__mutmut_4", "x = 1")]
    assert score.survived == [(WD + "f__mutmut_5", "survived: y = 2"), (WD + "f__mutmut_6", "no tests: z = 3")]
    assert score.stale == [("Watchdog.f", "gone = 0"), ("Watchdog.g", "y = 2")]
    assert score.percent == 60.0


def test_the_committed_exclusions_load_with_a_reason_each() -> None:
    data = bm.load_exclusions()
    assert data and set(data) <= set(bm.MODULES)
    assert all(item["why"].strip() for items in data.values() for item in items)


@pytest.mark.parametrize(("text", "names"), [
    ('{"a": [', ":1: not JSON"),
    ('["x"]', "expected an object"),
    ('{"pytest_cbchaos/nope.py": []}', "key 'pytest_cbchaos/nope.py'"),
    ('{"pytest_cbchaos/stream/fold.py": [{"function": "f", "mutant": "m", "why": " "}]}',
     "pytest_cbchaos/stream/fold.py[0]: expected non-empty strings function, mutant, why"),
])
def test_a_bad_exclusions_file_is_named_with_what_was_expected(tmp_path: Path, text: str, names: str) -> None:
    path = tmp_path / "excl.json"
    path.write_text(text)
    with pytest.raises(bm.ExclusionError, match=r".*".join([str(path).replace(".", r"\."), names.replace("[", r"\[")])):
        bm.load_exclusions(path)


@pytest.mark.parametrize("args", [["--timeout", "nan"], ["--timeout", "inf"], ["--max-children", "0"],
                                  ["--goal", "101"], ["--goal", "x"]])
def test_bad_options_exit_4_before_running(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        bm.main(args)
    assert e.value.code == 4
    assert args[0] in capsys.readouterr().err
