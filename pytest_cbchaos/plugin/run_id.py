"""One id per pytest run, shared by its xdist workers: artifacts go under ``<artifacts>/<run id>/`` so the
links of an earlier run's report stay valid when the next run writes its own (docs/report-schema.md,
"Run id and artifacts"). The controller keeps the newest ``KEEP_RUNS`` run directories and removes older ones."""

from __future__ import annotations

import datetime as _dt
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from pytest_cbchaos.settings import get_settings

RUN_ID_KEY = pytest.StashKey[str]()
WORKERINPUT_KEY = "cbchaos_run_id"
RUN_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")
KEEP_RUNS = 10  # the current run and the 9 before it


def new_run_id() -> str:
    """Sortable by time (UTC, seconds) with a random tail for runs started in the same second."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def run_id(config: pytest.Config) -> str:
    """The run's id: the controller's, handed to each xdist worker in its ``workerinput``."""
    inherited = getattr(config, "workerinput", {}).get(WORKERINPUT_KEY)
    if inherited:
        return str(inherited)
    if RUN_ID_KEY not in config.stash:
        config.stash[RUN_ID_KEY] = new_run_id()
    return config.stash[RUN_ID_KEY]


def artifacts_root(config: pytest.Config) -> Path:
    path = Path(get_settings(config).artifacts)
    return path if path.is_absolute() else Path(config.rootpath, path)


def run_artifacts(config: pytest.Config) -> Path:
    """``<artifacts>/<run id>``: where this run's per-test artifact directories go."""
    return artifacts_root(config) / run_id(config)


def prune_runs(root: Path, current: str, keep: int = KEEP_RUNS) -> list[Path]:
    """Remove run directories older than the newest ``keep`` (the current one always stays); anything
    not named like a run id is left alone."""
    if not root.is_dir():
        return []
    runs = sorted((p for p in root.iterdir() if p.is_dir() and RUN_ID_PATTERN.match(p.name) and p.name != current),
                  key=lambda p: p.name, reverse=True)
    removed = runs[max(keep - 1, 0):]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def configure_node(node: Any) -> None:
    node.workerinput[WORKERINPUT_KEY] = run_id(node.config)
