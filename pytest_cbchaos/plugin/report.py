"""Report hooks: per-test records via ``report.user_properties`` (so xdist ships them), JUnit
properties, controller-side aggregation, report.json/report.html and the terminal summary.

Enabled by ``--cbchaos-report=DIR`` (writes files); the terminal section is printed whenever
a test contributed chaos data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_cbchaos.plugin.keys import FAULT_JOURNAL_KEY
from pytest_cbchaos.plugin.scenario import ENV_KEY as SCENARIO_ENV_KEY, RESULT_KEY
from pytest_cbchaos.report.collect import add, base_record, encode, verdict_fields

ENTRIES_KEY = pytest.StashKey[dict]()
WORKERS_KEY = pytest.StashKey[dict]()


def _settings(config: pytest.Config) -> Any:
    from pytest_cbchaos.settings import get_settings

    return get_settings(config)


def _report_dir(config: pytest.Config) -> Path | None:
    try:
        d = _settings(config).report
    except Exception:
        return None
    if d is None:
        return None
    return d if d.is_absolute() else Path(config.invocation_params.dir, d)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when == "call" and call.excinfo is not None:
        _record_violation(item, call.excinfo.value)
    if report.when != "teardown" and not (report.when == "setup" and report.skipped):
        return
    record = base_record(item, result=item.stash.get(RESULT_KEY, None),
                         journal=item.stash.get(FAULT_JOURNAL_KEY, None))
    if record is None:
        return
    record["nodeid"] = item.nodeid
    fields = verdict_fields(record)
    record.update(fields)
    verdict = fields["verdict"]
    # the record rides on the report object (xdist serialises plain attributes); JUnit gets short
    # properties on the teardown report, which junitxml writes (no record_property warning, #7767 avoided)
    report.cbchaos_record = encode(record)  # type: ignore[attr-defined]
    report.user_properties.extend(junit_properties(fields))
    rdir = _report_dir(item.config)
    if rdir is not None:
        report.user_properties.append(("cbchaos_report", str(rdir / "report.html")))
    if item.config.pluginmanager.hasplugin("html"):
        _html_extras(report, record, verdict)


def junit_properties(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """The verdict as JUnit ``<property>`` pairs (the same fields report.json carries)."""
    a = fields["audit"]
    ops = a.get("ops_observed")
    props = [("cbchaos_verdict", fields["verdict"]),
             ("cbchaos_faults", f"requested={a.get('faults_requested', 0)} applied={a.get('faults_applied', 0)} "
                                f"failed={a.get('faults_failed', 0)}"),
             ("cbchaos_ops_observed", "n/a" if ops is None else str(ops))]
    props.extend(("cbchaos_verdict_reason", r) for r in fields["verdict_reasons"])
    return props


def _record_violation(item: pytest.Item, exc: BaseException) -> None:
    """A test that raised :class:`LinearizabilityViolation` (e.g. a concurrent state machine) gets its
    ILLEGAL check into the report, so the summary counts it."""
    from pytest_cbchaos.linearizability.checker import LinearizabilityViolation
    from pytest_cbchaos.stateful.survey import StoreDeviation, SurveyFailed

    store = _find(exc, SurveyFailed) or _find(exc, StoreDeviation)
    if store is not None:  # the store machine: one check per bug class, named by the class
        found_ = store.report.findings if isinstance(store, SurveyFailed) else [store.finding]
        add(item, checks=[{"name": f"store-model:{f.klass.id}", "kind": "store-model", "verdict": "violated",
                           "detail": f"{f.klass.message} [{f.klass.cb}]: {f.detail}",
                           "counterexample": {"bug_class": f.to_dict()}} for f in found_])
        return
    found = _find(exc, LinearizabilityViolation)
    if found is None:
        return
    result = found.result
    model = getattr(result, "model", None) or "history"
    check = {"name": f"linearizability:{model}", "kind": "linearizability", "verdict": "illegal",
             "detail": result.summary() if result is not None else str(found).splitlines()[0],
             "counterexample": getattr(result, "counterexample", None)}
    if result is not None:
        add(item, checks=[check], ops_observed=len(result.ops))
    else:
        add(item, checks=[check])


def _find(exc: BaseException, cls: type) -> Any:
    if isinstance(exc, cls):
        return exc
    for sub in getattr(exc, "exceptions", ()) or ():  # ExceptionGroup (e.g. Hypothesis, several failures)
        hit = _find(sub, cls)
        if hit is not None:
            return hit
    return None


def _html_extras(report: pytest.TestReport, record: dict[str, Any], verdict: str) -> None:
    """pytest-html 4.x: a short verdict block and a link to the artifacts (only when installed)."""
    try:
        from html import escape

        from pytest_html import extras  # type: ignore[import-not-found]
    except Exception:
        return
    bad = [c["name"] for c in record.get("checks", []) if c.get("verdict") in ("violated", "illegal", "unknown")]
    a = record.get("audit") or {}
    reasons = record.get("verdict_reasons") or []
    block = (f"<div class='cbchaos'>cbchaos verdict: <b>{escape(verdict)}</b>; faults applied "
             f"{a.get('faults_applied', 0)}/{a.get('faults_requested', 0)}"
             + (f"; violated: {escape(', '.join(bad))}" if bad else "")
             + (f"; {escape('; '.join(reasons))}" if reasons else "") + "</div>")
    report.extras = [*getattr(report, "extras", []), extras.html(block)]  # type: ignore[attr-defined]
    if record.get("artifacts"):
        report.extras.append(extras.url(str(record["artifacts"]), name="cbchaos artifacts"))  # type: ignore[attr-defined]


def _entries(config: pytest.Config) -> dict[str, dict[str, Any]]:
    return config.stash.setdefault(ENTRIES_KEY, {})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Controller (or single process): fold every phase report into one entry per nodeid."""
    config = _CONFIG[-1] if _CONFIG else None
    if config is None or hasattr(config, "workerinput"):
        return
    entries = _entries(config)
    entry = entries.setdefault(report.nodeid, {"outcome": "passed", "duration_s": 0.0, "record": None,
                                               "longrepr": None, "skip_reason": None,
                                               "worker": getattr(report, "node", None) and
                                               getattr(report.node, "gateway", None) and report.node.gateway.id
                                               or "master"})
    entry["duration_s"] += getattr(report, "duration", 0.0) or 0.0
    if report.failed:
        entry["outcome"] = "failed" if report.when == "call" else "error"
        entry["longrepr"] = str(report.longrepr)
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
        lr = report.longrepr
        entry["skip_reason"] = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    record = getattr(report, "cbchaos_record", None)
    if record is not None:
        entry["record"] = json.loads(record) if isinstance(record, str) else record


_CONFIG: list[pytest.Config] = []


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG.append(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    if config in _CONFIG:
        _CONFIG.remove(config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workeroutput"):  # xdist worker: ship per-worker data to the controller
        env = config.stash.get(SCENARIO_ENV_KEY, None)
        config.workeroutput["cbchaos_backends"] = json.dumps(env.backends() if env else {})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    out = getattr(node, "workeroutput", None) or {}
    config = node.config
    if "cbchaos_backends" in out:
        config.stash.setdefault(WORKERS_KEY, {})[node.gateway.id] = {"backends": json.loads(out["cbchaos_backends"])}


def build_from_config(config: pytest.Config, exitstatus: int | None) -> dict[str, Any]:
    from pytest_cbchaos.report.model import build_report, make_entry

    entries = [make_entry(nodeid, e["outcome"], e["duration_s"], e["record"], e["longrepr"], e["skip_reason"],
                          str(e["worker"])) for nodeid, e in _entries(config).items()]
    workers = config.stash.get(WORKERS_KEY, {})
    backends: dict[str, Any] = {}
    for w in workers.values():
        backends.update(w.get("backends", {}))
    env = config.stash.get(SCENARIO_ENV_KEY, None)
    if env is not None:
        backends.update(env.backends())
    for e in entries:
        backends.update(e.get("backends") or {})
    try:
        seed = _settings(config).seed
    except Exception:
        seed = None
    command = " ".join(["pytest", *config.invocation_params.args])
    from pytest_cbchaos.plugin.background import background_load
    from pytest_cbchaos.plugin.run_id import run_id

    return build_report(entries, seed=seed, command=command, backends=backends, workers=workers,
                        exitstatus=int(exitstatus) if exitstatus is not None else None,
                        background_load=background_load(config), run_id=run_id(config))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    rdir = _report_dir(config)
    if rdir is None and not any(e["record"] for e in _entries(config).values()):
        return  # no chaos data and no report asked for: nothing to say (and nothing to import)
    from pytest_cbchaos.report.html import write_html
    from pytest_cbchaos.report.model import write_json
    from pytest_cbchaos.report.terminal import is_interesting, render_summary

    report = build_from_config(config, exitstatus)
    paths: list[str] = []
    problem = None
    if rdir is not None:
        try:
            paths = [str(write_json(report, rdir)), str(write_html(report, rdir))]
        except OSError as exc:  # the verdicts stand and are printed below; only the files are missing
            problem = f"cbchaos: report not written to {rdir}: {exc}\n"
    interesting = any(is_interesting(t) for t in report["tests"])
    if not (interesting or paths or problem):
        return
    terminalreporter.write_sep("=", "cbchaos")
    width = getattr(getattr(terminalreporter, "_tw", None), "fullwidth", 0)
    terminalreporter.write(render_summary(report, paths, width=max(width, 120)))
    if problem:
        terminalreporter.write(problem)
