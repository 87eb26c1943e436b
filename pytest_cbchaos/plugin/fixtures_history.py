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
``linearizability:<model>`` check (docs/report-schema.md, "Verdict and audit").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from pytest_cbchaos.settings import Settings, get_settings

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


def artifact_dir(settings: Settings, nodeid: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:120]
    path = settings.artifacts / slug
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_artifacts(directory: Path, recorder: Any, result: Any, journal: Any) -> dict[str, str]:
    """history.jsonl, faults.jsonl, results.json and timeline.html for one checked history."""
    from pytest_cbchaos.history.store import dumps_event

    history = recorder.history()
    paths = {"history": directory / "history.jsonl", "faults": directory / "faults.jsonl",
             "results": directory / "results.json", "timeline": directory / "timeline.html"}
    with open(paths["history"], "w", encoding="utf-8") as fh:
        for event in recorder.events():  # bytes as UTF-8 text, as ``cbchaos check`` reads them
            fh.write(dumps_event(event) + "\n")
    with open(paths["faults"], "w", encoding="utf-8") as fh:
        for window in journal.to_dicts():
            fh.write(json.dumps(window) + "\n")
    results = result.to_dict()
    results["faults"] = journal.to_dicts()
    results["fault_failures"] = [f.to_dict() for f in journal.failures()]
    paths["results"].write_text(json.dumps(results, indent=2, default=str))
    from pytest_cbchaos.linearizability.html import write_timeline

    write_timeline(result, paths["timeline"], history=history, title=directory.name)
    return {k: str(v) for k, v in paths.items()}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    marker = item.get_closest_marker("linearizable")
    if marker is None:
        return outcome
    recorder = item.stash.get(HISTORY_KEY, None)
    if recorder is None:  # a check with nothing to check is an error, never a silent pass
        _report_check(item, marker, "unknown", "the test recorded no history", None, ops=0)
        pytest.fail(f"{item.nodeid}: @pytest.mark.linearizable needs a recorded history: request the "
                    "cbchaos_history fixture and record operations into it", pytrace=False)
    check_recorded_history(item, marker, recorder)
    return outcome


def _model_name(marker: pytest.Mark) -> str:
    return str(marker.args[0] if marker.args else marker.kwargs.get("model") or "")


def _report_check(item: pytest.Item, marker: pytest.Mark, verdict: str, detail: str, counterexample: Any,
                  ops: int | None) -> None:
    """The check as the kit's reports see it (terminal, report.json, report.html, JUnit).

    ``ops`` None: an empty history the marker allowed (``allow_empty=True``), so nothing to audit."""
    from pytest_cbchaos.report.collect import add

    counted = {} if ops is None else {"ops_observed": ops}
    add(item, checks=[{"name": f"linearizability:{_model_name(marker) or '?'}", "kind": "linearizability",
                       "verdict": verdict, "detail": detail, "counterexample": counterexample}], **counted)


def _keep_artifacts(settings: Settings, item: pytest.Item, recorder: Any, result: Any) -> tuple[dict[str, str], str]:
    """Write the artifacts; a path that cannot be written is reported, never raised over the verdict."""
    try:
        return write_artifacts(artifact_dir(settings, item.nodeid), recorder, result, recorder.journal), ""
    except OSError as exc:
        return {}, f"artifacts not written to {settings.artifacts}: {type(exc).__name__}: {exc}"


def check_recorded_history(item: pytest.Item, marker: pytest.Mark, recorder: Any) -> None:
    from pytest_cbchaos.history.ops import MalformedHistory
    from pytest_cbchaos.linearizability.checker import Verdict, check
    from pytest_cbchaos.linearizability.models import get_model

    settings = get_settings(item.config)
    model_name = _model_name(marker)
    if not model_name:
        pytest.fail(f"{item.nodeid}: @pytest.mark.linearizable needs a model name, e.g. 'cas-register'", pytrace=False)
    try:
        model = get_model(model_name)
    except (KeyError, ValueError) as exc:
        pytest.fail(f"{item.nodeid}: @pytest.mark.linearizable({model_name!r}): {exc}", pytrace=False)
    timeout = marker.kwargs.get("timeout") or settings.check_timeout
    recorder.close()
    history = recorder.history()
    label = f"{item.nodeid}: @pytest.mark.linearizable({model_name!r})"
    allow_empty = bool(marker.kwargs.get("allow_empty", False))
    if not history.client_events() and not allow_empty:
        _report_check(item, marker, "unknown", "no operations were recorded", None, ops=0)
        pytest.fail(f"{label}: no operations were recorded into cbchaos_history: observed 0 operations "
                    "(nothing was checked; allow_empty=True accepts an empty history)", pytrace=False)
    try:
        result = check(history, model, timeout=timeout, max_cache_entries=settings.max_cache, mode="report")
    except MalformedHistory as exc:
        _report_check(item, marker, "unknown", f"the recorded history cannot be checked: {exc}", None, ops=0)
        pytest.fail(f"{label}: the recorded history cannot be checked: {exc}", pytrace=False)
    failures = recorder.journal.failures() if recorder.journal is not None else []
    keep = settings.keep == "all" or (settings.keep == "failed" and (result.verdict is not Verdict.OK
                                                                      or not result.ops or bool(failures)))
    artifacts: dict[str, str] = {}
    problem = ""
    if keep:
        artifacts, problem = _keep_artifacts(settings, item, recorder, result)
        if artifacts:
            item.user_properties.append(("cbchaos_report", artifacts.get("timeline", artifacts["results"])))
    detail = result.summary() + (f"; {problem}" if problem else "")
    _report_check(item, marker, result.verdict.value, detail, result.counterexample,
                  ops=len(result.ops) if result.ops or not allow_empty else None)
    where = f"artifacts: {artifacts or problem or 'not kept (--cbchaos-keep=none)'}"
    if result.verdict is Verdict.ILLEGAL:
        ce = json.dumps(result.counterexample, indent=1, default=str)[:4000]
        pytest.fail(f"history is not linearizable: {result.summary()}\ncounterexample: {ce}\n{where}", pytrace=False)
    if not result.ops and not allow_empty:
        pytest.fail(f"{item.nodeid}: the linearizability check observed 0 operations (nothing was checked); "
                    f"record operations into cbchaos_history\n{where}", pytrace=False)
    if failures:
        text = "; ".join(f"{f.kind} on {f.target}: {f.error}" for f in failures[:5])
        pytest.fail(f"{item.nodeid}: {len(failures)} requested fault(s) were not applied, so the history was not "
                    f"checked under the faults it asked for: {text}\n{where}", pytrace=False)
    if result.verdict is Verdict.UNKNOWN:
        message = f"linearizability check was UNKNOWN (budget exhausted): {result.summary()}"
        if settings.on_unknown == "fail":
            pytest.fail(message, pytrace=False)
        if settings.on_unknown == "skip":
            pytest.skip(message)
