"""``cbchaos_history`` and the ``linearizable(model, timeout=None)`` marker.

A test records operations into ``cbchaos_history`` (a :class:`~pytest_cbchaos.history.recorder.Recorder`
sharing the test's fault journal, so fault windows land in the same history). When the test is
marked ``@pytest.mark.linearizable("cas-register")``, the history is checked after the test body
returns; an ILLEGAL verdict fails the test with the counterexample, and so does a history with no
operations (nothing was checked; ``allow_empty=True`` accepts it) or one the model cannot judge, and the history, the journal,
``results.json`` and ``timeline.html`` are written to the artifact directory (kept per
``--cbchaos-keep``). UNKNOWN follows ``--cbchaos-on-unknown``. A marked test that records no
history, observes 0 operations, or had a requested fault that was not applied fails: its check had
nothing (or not the asked-for chaos) to check. The verdict reaches the kit's reports as a
``linearizability:<model>`` check (docs/report-schema.md, "Verdict and audit"). The check itself is
``pytest_cbchaos.linearizability.recorded``; this module only wires it to pytest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from pytest_cbchaos.settings import get_settings

if TYPE_CHECKING:
    from pytest_cbchaos.linearizability.recorded import Judgement

HISTORY_KEY = pytest.StashKey[Any]()


@pytest.fixture
def cbchaos_history(request: pytest.FixtureRequest, cbchaos_faults: Any) -> Iterator[Any]:
    """A recorder for this test; ``workers`` comes from ``@pytest.mark.linearizable(..., workers=N)`` (default 16)."""
    from pytest_cbchaos.history.recorder import Recorder

    marker = request.node.get_closest_marker("linearizable")
    n_workers = int(marker.kwargs.get("workers", 16)) if marker else 16
    recorder = Recorder(n_workers, journal=cbchaos_faults.journal)
    request.node.stash[HISTORY_KEY] = recorder
    yield recorder
    if not recorder.closed:
        recorder.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    marker = item.get_closest_marker("linearizable")
    if marker is None:
        return outcome
    recorder = item.stash.get(HISTORY_KEY, None)
    if recorder is None:  # a check with nothing to check is an error, never a silent pass
        from pytest_cbchaos.linearizability.recorded import no_history

        _conclude(item, marker, no_history(item.nodeid))
    check_recorded_history(item, marker, recorder)
    return outcome


def _model_name(marker: pytest.Mark) -> str:
    return str(marker.args[0] if marker.args else marker.kwargs.get("model") or "")


def _report_check(item: pytest.Item, marker: pytest.Mark, j: Judgement) -> None:
    """The check as the kit's reports see it (terminal, report.json, report.html, JUnit)."""
    from pytest_cbchaos.report.collect import add

    counted: dict[str, Any] = {} if j.ops is None else {"ops_observed": j.ops}
    if j.artifacts:  # the report links the history views of this run's directory
        counted["artifacts"] = str(Path(j.artifacts["results"]).parent)
    add(item, checks=[{"name": f"linearizability:{_model_name(marker) or '?'}", "kind": "linearizability",
                       "verdict": j.verdict, "detail": j.detail, "counterexample": j.counterexample}], **counted)


def _conclude(item: pytest.Item, marker: pytest.Mark, j: Judgement) -> None:
    if j.report:
        _report_check(item, marker, j)
    if j.artifacts:
        item.user_properties.append(("cbchaos_report", j.artifacts.get("timeline", j.artifacts["results"])))
    if j.fail is not None:
        pytest.fail(j.fail, pytrace=False)
    if j.skip is not None:
        pytest.skip(j.skip)


def check_recorded_history(item: pytest.Item, marker: pytest.Mark, recorder: Any) -> None:
    from pytest_cbchaos.linearizability.recorded import CheckSettings, judge_recorded
    from pytest_cbchaos.plugin.run_id import run_artifacts

    s = get_settings(item.config)
    settings = CheckSettings(timeout=s.check_timeout, max_cache=s.max_cache, keep=s.keep,
                             artifacts=run_artifacts(item.config),
                             on_unknown=s.on_unknown)
    _conclude(item, marker, judge_recorded(recorder, _model_name(marker), nodeid=item.nodeid, settings=settings,
                                           timeout=marker.kwargs.get("timeout"),
                                           allow_empty=bool(marker.kwargs.get("allow_empty", False))))
