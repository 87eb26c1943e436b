"""Judging a test's recorded history for the ``linearizable(model, ...)`` marker (docs/linearizability.md).

The check, its artifacts and what the test's outcome must be, without pytest: the glue
(``plugin/fixtures_history.py``) turns a :class:`Judgement` into report data and a fail or skip.
A check with nothing to check is never a pass: no history, no operations, a history the model
cannot judge, or a requested fault that was not applied all fail.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Judgement:
    """What the marker's check concluded. ``report`` False: a usage error, no check to report."""

    verdict: str = "unknown"
    detail: str = ""
    counterexample: Any = None
    ops: int | None = 0  # operations the check saw; None: an empty history the marker allowed
    fail: str | None = None
    skip: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    report: bool = True


@dataclass(frozen=True)
class CheckSettings:
    """The ``--cbchaos-*`` settings the check uses."""

    timeout: float
    max_cache: int
    keep: str  # all | failed | none
    artifacts: Path
    on_unknown: str  # fail | skip | pass


def no_history(nodeid: str) -> Judgement:
    return Judgement(detail="the test recorded no history",
                     fail=f"{nodeid}: @pytest.mark.linearizable needs a recorded history: request the "
                          "cbchaos_history fixture and record operations into it")


def artifact_dir(root: Path, nodeid: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:120]
    path = root / slug
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_artifacts(directory: Path, recorder: Any, result: Any, journal: Any) -> dict[str, str]:
    """history.jsonl, faults.jsonl, results.json and timeline.html for one checked history."""
    from pytest_cbchaos.history.store import dumps_event
    from pytest_cbchaos.linearizability.html import write_timeline

    history = recorder.history()
    windows = journal.to_dicts() if journal is not None else []
    paths = {"history": directory / "history.jsonl", "faults": directory / "faults.jsonl",
             "results": directory / "results.json", "timeline": directory / "timeline.html"}
    with open(paths["history"], "w", encoding="utf-8") as fh:
        for event in recorder.events():  # bytes as UTF-8 text, as ``cbchaos check`` reads them
            fh.write(dumps_event(event) + "\n")
    with open(paths["faults"], "w", encoding="utf-8") as fh:
        for window in windows:
            fh.write(json.dumps(window) + "\n")
    results = result.to_dict()
    results["faults"] = windows
    results["fault_failures"] = [f.to_dict() for f in journal.failures()] if journal is not None else []
    paths["results"].write_text(json.dumps(results, indent=2, default=str))
    write_timeline(result, paths["timeline"], history=history, title=directory.name)
    return {k: str(v) for k, v in paths.items()}


def _keep_artifacts(settings: CheckSettings, nodeid: str, recorder: Any, result: Any) -> tuple[dict[str, str], str]:
    """Write the artifacts; a path that cannot be written is reported, never raised over the verdict."""
    try:
        return write_artifacts(artifact_dir(settings.artifacts, nodeid), recorder, result, recorder.journal), ""
    except OSError as exc:
        return {}, f"artifacts not written to {settings.artifacts}: {type(exc).__name__}: {exc}"


def judge_recorded(recorder: Any, model_name: str, *, nodeid: str, settings: CheckSettings,
                   timeout: float | None = None, allow_empty: bool = False) -> Judgement:
    """Close ``recorder``, check its history against ``model_name`` and say what the test's outcome must be."""
    from pytest_cbchaos.history.ops import MalformedHistory
    from pytest_cbchaos.linearizability.checker import Verdict, check
    from pytest_cbchaos.linearizability.models import get_model

    if not model_name:
        return Judgement(report=False, fail=f"{nodeid}: @pytest.mark.linearizable needs a model name, "
                                            "e.g. 'cas-register'")
    try:
        model = get_model(model_name)
    except (KeyError, ValueError) as exc:
        return Judgement(report=False, fail=f"{nodeid}: @pytest.mark.linearizable({model_name!r}): {exc}")
    recorder.close()
    history = recorder.history()
    label = f"{nodeid}: @pytest.mark.linearizable({model_name!r})"
    if not history.client_events() and not allow_empty:
        return Judgement(detail="no operations were recorded",
                         fail=f"{label}: no operations were recorded into cbchaos_history: observed 0 operations "
                              "(nothing was checked; allow_empty=True accepts an empty history)")
    try:
        result = check(history, model, timeout=timeout or settings.timeout, max_cache_entries=settings.max_cache,
                       mode="report")
    except MalformedHistory as exc:
        return Judgement(detail=f"the recorded history cannot be checked: {exc}",
                         fail=f"{label}: the recorded history cannot be checked: {exc}")
    failures = recorder.journal.failures() if recorder.journal is not None else []
    keep = settings.keep == "all" or (settings.keep == "failed" and (result.verdict is not Verdict.OK
                                                                      or not result.ops or bool(failures)))
    artifacts, problem = _keep_artifacts(settings, nodeid, recorder, result) if keep else ({}, "")
    j = Judgement(verdict=result.verdict.value, detail=result.summary() + (f"; {problem}" if problem else ""),
                  counterexample=result.counterexample, artifacts=artifacts,
                  ops=len(result.ops) if result.ops or not allow_empty else None)
    where = f"artifacts: {artifacts or problem or 'not kept (--cbchaos-keep=none)'}"
    if result.verdict is Verdict.ILLEGAL:
        ce = json.dumps(result.counterexample, indent=1, default=str)[:4000]
        j.fail = f"history is not linearizable: {result.summary()}\ncounterexample: {ce}\n{where}"
    elif not result.ops and not allow_empty:
        j.fail = (f"{nodeid}: the linearizability check observed 0 operations (nothing was checked); "
                  f"record operations into cbchaos_history\n{where}")
    elif failures:
        text = "; ".join(f"{f.kind} on {f.target}: {f.error}" for f in failures[:5])
        j.fail = (f"{nodeid}: {len(failures)} requested fault(s) were not applied, so the history was not "
                  f"checked under the faults it asked for: {text}\n{where}")
    elif result.verdict is Verdict.UNKNOWN:
        message = f"linearizability check was UNKNOWN (budget exhausted): {result.summary()}"
        if settings.on_unknown == "fail":
            j.fail = message
        elif settings.on_unknown == "skip":
            j.skip = message
    return j
