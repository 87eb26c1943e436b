"""``cbchaos_history`` and the ``linearizable(model, timeout=None)`` marker.

A test records operations into ``cbchaos_history`` (a :class:`~pytest_cbchaos.history.recorder.Recorder`
sharing the test's fault journal, so fault windows land in the same history). When the test is
marked ``@pytest.mark.linearizable("cas-register")``, the history is checked after the test body
returns; an ILLEGAL verdict fails the test with the counterexample, and so does a history with no
operations (nothing was checked; ``allow_empty=True`` accepts it) or one the model cannot judge, and the history, the journal,
``results.json`` and ``timeline.html`` are written to the artifact directory (kept per
``--cbchaos-keep``). UNKNOWN follows ``--cbchaos-on-unknown``.
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
    paths["results"].write_text(json.dumps(results, indent=2, default=str))
    from pytest_cbchaos.linearizability.html import write_timeline

    write_timeline(result, paths["timeline"], history=history, title=directory.name)
    return {k: str(v) for k, v in paths.items()}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    marker = item.get_closest_marker("linearizable")
    recorder = item.stash.get(HISTORY_KEY, None)
    if marker is None or recorder is None:
        return outcome
    check_recorded_history(item, marker, recorder)
    return outcome


def check_recorded_history(item: pytest.Item, marker: pytest.Mark, recorder: Any) -> None:
    from pytest_cbchaos.history.ops import MalformedHistory
    from pytest_cbchaos.linearizability.checker import Verdict, check
    from pytest_cbchaos.linearizability.models import get_model

    settings = get_settings(item.config)
    model_name = marker.args[0] if marker.args else marker.kwargs.get("model")
    if not model_name:
        pytest.fail(f"{item.nodeid}: @pytest.mark.linearizable needs a model name, e.g. 'cas-register'", pytrace=False)
    try:
        model = get_model(model_name)
    except (KeyError, ValueError) as exc:
        pytest.fail(f"{item.nodeid}: @pytest.mark.linearizable({model_name!r}): {exc}", pytrace=False)
    timeout = marker.kwargs.get("timeout") or settings.check_timeout
    recorder.close()
    history = recorder.history()
    where = f"{item.nodeid}: @pytest.mark.linearizable({model_name!r})"
    if not history.client_events() and not marker.kwargs.get("allow_empty", False):
        pytest.fail(f"{where}: no operations were recorded into cbchaos_history, so nothing was checked "
                    "(allow_empty=True accepts an empty history)", pytrace=False)
    try:
        result = check(history, model, timeout=timeout, max_cache_entries=settings.max_cache, mode="report")
    except MalformedHistory as exc:
        pytest.fail(f"{where}: the recorded history cannot be checked: {exc}", pytrace=False)
    item.user_properties.append(("cbchaos_verdict", result.verdict.value))
    keep = settings.keep == "all" or (settings.keep == "failed" and result.verdict is not Verdict.OK)
    artifacts: dict[str, str] = {}
    if keep:
        journal = recorder.journal
        artifacts = write_artifacts(artifact_dir(settings, item.nodeid), recorder, result, journal)
        item.user_properties.append(("cbchaos_report", artifacts.get("timeline", artifacts["results"])))
    if result.verdict is Verdict.ILLEGAL:
        ce = json.dumps(result.counterexample, indent=1, default=str)[:4000]
        pytest.fail(f"history is not linearizable: {result.summary()}\ncounterexample: {ce}\n"
                    f"artifacts: {artifacts or 'not kept (--cbchaos-keep=none)'}", pytrace=False)
    if result.verdict is Verdict.UNKNOWN:
        message = f"linearizability check was UNKNOWN (budget exhausted): {result.summary()}"
        if settings.on_unknown == "fail":
            pytest.fail(message, pytrace=False)
        if settings.on_unknown == "skip":
            pytest.skip(message)
