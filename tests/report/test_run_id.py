"""Artifacts per run: a report's links stay valid after the next run, xdist workers share the run id,
old runs are pruned (docs/report-schema.md, "Run id and artifacts")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_cbchaos.plugin.run_id import RUN_ID_PATTERN, new_run_id, prune_runs

STALE = '''
import pytest

@pytest.mark.linearizable("register", workers=2)
def test_stale_{n}(cbchaos_history):
    with cbchaos_history.op(0, "write", 1) as h:
        h.ok()
    with cbchaos_history.op(0, "write", 2) as h:
        h.ok()
    with cbchaos_history.op(1, "read", None) as h:
        h.ok(1)
'''


def _links(html: str) -> list[str]:
    return re.findall(r'href="([^"#]+/timeline\.html)"', html)


def test_a_report_keeps_its_links_after_the_next_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_stale="".join(STALE.format(n=n) for n in range(2)))
    reports = []
    # the first run under xdist (its workers share the run id); the next one without (it only has to be the
    # next run: its controller's pruning and new run id are the same code, without two workers to spawn)
    for rep, workers in (("rep1", "2"), ("rep2", "0")):
        r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", workers, "--cbchaos-artifacts=art",
                                          f"--cbchaos-report={rep}")
        r.assert_outcomes(failed=2)
        reports.append(pytester.path / rep)
    runs = sorted(p.name for p in (pytester.path / "art").iterdir())
    assert len(runs) == 2 and all(RUN_ID_PATTERN.match(n) for n in runs), runs
    for rep, run in zip(reports, runs):
        assert json.loads((rep / "report.json").read_text())["run_id"] == run
        # both tests (in rep1 both workers') under the one run id of their controller
        assert sorted(p.name for p in (pytester.path / "art" / run).iterdir()) == [
            "test_stale.py_test_stale_0", "test_stale.py_test_stale_1"]
        links = _links((rep / "report.html").read_text())
        assert len(links) == 2 and all(f"/{run}/" in link for link in links), links
        assert all((rep / link).resolve().is_file() for link in links)  # still there after the second run


def test_prune_keeps_the_newest_runs_and_leaves_other_names_alone(tmp_path: Path) -> None:
    names = [f"202612{d:02d}-120000-abcd" for d in range(1, 8)]
    for name in [*names, "notes", "20261201-1200-bad"]:
        (tmp_path / name).mkdir()
    removed = prune_runs(tmp_path, current=names[0], keep=3)
    assert sorted(p.name for p in removed) == names[1:5]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["20261201-1200-bad", "notes", names[0], *names[5:]])
    assert prune_runs(tmp_path / "missing", current="x") == []


def test_run_ids_sort_by_time_and_differ() -> None:
    a, b = new_run_id(), new_run_id()
    assert RUN_ID_PATTERN.match(a) and a != b
