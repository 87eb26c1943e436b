"""pytest collection of scenario files: ``pytest scenarios/`` (honours -k, -m, markers and xdist).

A file is collected when it is ``*.scenario.yaml``/``*.scenario.yml``, any ``*.yaml``/``*.yml``
inside a directory named ``scenarios``, or a ``*.yaml``/``*.yml`` named on the command line. A malformed file is a collection error whose text is the
located message (no traceback), and the run exits with code 4 (usage error).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from pytest_cbchaos.scenario.files import SUFFIXES, is_scenario_file
from pytest_cbchaos.settings import get_settings

if TYPE_CHECKING:
    from pytest_cbchaos.scenario.model import Scenario

ENV_KEY = pytest.StashKey[Any]()
EXIT_KEY = pytest.StashKey[int]()  # the session's exit status, for the workdir cleanup
LOAD_ERRORS_KEY = pytest.StashKey[list]()
RESULT_KEY = pytest.StashKey[Any]()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if is_scenario_file(file_path) or (file_path.suffix in SUFFIXES and parent.session.isinitpath(file_path)):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioLoadError(Exception):
    pass


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from pytest_cbchaos.scenario.errors import ScenarioError
        from pytest_cbchaos.scenario.loader import load_scenario

        try:
            scenario = load_scenario(self.path)
        except ScenarioError as exc:
            self.config.stash.setdefault(LOAD_ERRORS_KEY, []).append(exc.format())
            raise ScenarioLoadError(exc.format()) from None
        item = ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)
        for marker in scenario.markers:
            item.add_marker(marker)
        item.add_marker(pytest.mark.chaos(*sorted({f.kind for f in scenario.faults})))
        yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if excinfo.errisinstance(ScenarioLoadError):
            return f"malformed scenario: {excinfo.value}"
        return super().repr_failure(excinfo)


class ScenarioFailure(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        # -k matches names, markers and extra keywords: target, tags, covered invariants, fault kinds
        self.extra_keyword_matches.update({scenario.target, *scenario.tags, *scenario.covers,
                                           *(f.kind for f in scenario.faults)})

    def runtest(self) -> None:
        from pytest_cbchaos.scenario.runner import run_scenario
        from pytest_cbchaos.scenario.targets import TargetUnavailable

        env = scenario_env(self.config)
        seed = _seed(self.config)
        artifacts = _artifact_dir(self.config, self.nodeid)
        try:
            result = run_scenario(self.scenario, env=env, seed=seed, artifacts=artifacts)
        except TargetUnavailable as exc:
            if getattr(exc, "required", False):
                pytest.fail(f"{exc} (required: CI is set)", pytrace=False)
            pytest.skip(str(exc))
        if artifacts is not None and result.outcome == "passed" and _keep(self.config) == "failed":
            _prune(artifacts)  # --cbchaos-keep=failed (default): only the small linked timeline page stays
            if not artifacts.exists():
                result.artifacts = None
        self.stash[RESULT_KEY] = result
        if result.outcome != "passed":
            raise ScenarioFailure(format_failure(result))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if excinfo.errisinstance(ScenarioFailure):
            return excinfo.value.text
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.scenario.name} (target {self.scenario.target})"


KEEP_ON_PASS = ("timeline.html",)


def _prune(directory: Path) -> None:
    """Drop a passed scenario's raw artifacts, keeping the pages report.html links to."""
    import shutil

    if not directory.is_dir():
        return
    kept = False
    for entry in directory.iterdir():
        if entry.name in KEEP_ON_PASS:
            kept = True
        elif entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if not kept:
        shutil.rmtree(directory, ignore_errors=True)


def format_failure(result: Any) -> str:
    s = result.scenario
    lines = [f"scenario {s.name} ({s.path}) target={s.target} seed={result.seed}: {result.outcome}"]
    if result.error:
        lines.append(f"  error: {result.error}")
    verdict = result.verdict
    if verdict is not None and verdict.status == "error":
        lines.extend(f"  ERROR    {r}" for r in verdict.reasons if not r.startswith("run error: "))
    for c in result.checks:
        mark = "FAIL" if c.result.failed else c.result.verdict.upper()
        where = f" [{s.path}:{c.line}]" if c.line else ""
        lines.append(f"  {mark:8} {c.label}{where}: {c.result.detail}")
        if c.result.failed and c.result.counterexample is not None:
            import json

            text = json.dumps(c.result.counterexample, indent=2, default=str, sort_keys=True)
            lines.extend("      " + ln for ln in text.splitlines()[:40])
    a = verdict.audit if verdict is not None else None
    audit = (f"faults requested {a.faults_requested}, applied {a.faults_applied}, failed {a.faults_failed}; "
             f"ops observed {a.ops_observed}") if a is not None else f"faults injected: {len(result.faults)}"
    lines.append(f"  {audit}; re-run: cbchaos run {s.path} --seed {result.seed}")
    if result.artifacts:
        lines.append(f"  artifacts: {result.artifacts}")
    if result.artifacts_error:
        lines.append(f"  {result.artifacts_error}")
    return "\n".join(lines)


def _seed(config: pytest.Config) -> int:
    return get_settings(config).seed


def _keep(config: pytest.Config) -> str:
    return get_settings(config).keep


def _artifact_dir(config: pytest.Config, nodeid: str) -> Path | None:
    s = get_settings(config)
    if s.keep == "none":
        return None
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]
    from pytest_cbchaos.plugin.run_id import run_artifacts

    return run_artifacts(config) / slug


def scenario_env(config: pytest.Config) -> Any:
    """The environment the scenarios of this process share (started lazily, stopped at session end)."""
    env = config.stash.get(ENV_KEY, None)
    if env is None:
        import tempfile

        from pytest_cbchaos.env import Environment
        from pytest_cbchaos.plugin.session import worker_id

        workdir = Path(tempfile.mkdtemp(prefix="cbchaos-scenario-servers-"))
        env = Environment.from_settings(get_settings(config), workdir, rootdir=Path(str(config.rootpath)),
                                        worker=f"scenario-{worker_id(config)}")
        config.stash[ENV_KEY] = env
        config.add_cleanup(lambda: _stop_and_tidy(config, env, workdir))
    return env


def _stop_and_tidy(config: pytest.Config, env: Any, workdir: Path) -> None:
    """Stop the servers, then remove their temp directory. Their logs are kept when ``--cbchaos-keep``
    wants them (``all``, or ``failed`` after a session that did not pass): moved into this run's
    artifacts (``<artifacts>/<run id>/scenario-servers-<worker>``), which keep the newest runs only, so
    nothing piles up in the system temp directory."""
    import shutil

    from pytest_cbchaos.plugin.run_id import run_artifacts
    from pytest_cbchaos.plugin.session import worker_id

    try:
        env.stop()
    finally:
        keep = get_settings(config).keep
        failed = config.stash.get(EXIT_KEY, 0) != 0
        if keep == "all" or (keep == "failed" and failed):
            dest = run_artifacts(config) / f"scenario-servers-{worker_id(config)}"
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(workdir), dest)
            except OSError:
                pass  # the logs are a convenience; the temp directory goes either way
        shutil.rmtree(workdir, ignore_errors=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start slow shared servers (opencode) in the background when this process will run their scenarios.

    Only when at least two scenarios of the target are selected: under xdist a single one may well land
    on the other worker, and a needless start would hold the session end."""
    by_target: dict[str, list[ScenarioItem]] = {}
    for item in session.items:
        if isinstance(item, ScenarioItem):
            by_target.setdefault(item.scenario.target, []).append(item)
    if session.config.option.collectonly or not by_target:
        return
    from pytest_cbchaos.scenario.targets import Target, resolve_target
    for name, items in by_target.items():
        if len(items) < 2 and getattr(session.config, "workerinput", None) is not None:
            continue
        try:
            target = resolve_target(name, base=items[0].scenario.path.parent)
            if (type(target).prestart is not Target.prestart
                    and not target.unavailable(items[0].scenario, env=scenario_env(session.config))):
                target.prestart(scenario_env(session.config))
        except Exception:
            continue  # the scenario itself reports whatever is wrong


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Controller side (also under xdist): remember malformed scenario files for exit code 4."""
    if report.failed and str(report.longrepr).startswith("malformed scenario:"):
        _FAILED_LOADS.append(str(report.longrepr))


_FAILED_LOADS: list[str] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[EXIT_KEY] = int(exitstatus)
    if _FAILED_LOADS or session.config.stash.get(LOAD_ERRORS_KEY, None):
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    _FAILED_LOADS.clear()
