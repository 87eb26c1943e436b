"""Shared by tests/scenario, tests/report and tests/cli: a pytester project with the sample targets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PLUGINS = ["-p", "pytest_cbchaos.plugin.scenario", "-p", "pytest_cbchaos.plugin.report"]

GOOD = """\
name: counter-pause
target: sample_targets:CounterTarget
tags: [smoke]
topology: {workers: {count: 3}}
workload: {duration_s: 1.2, interval_ms: 2, ops_per_worker: 5000}
faults:
  - {kind: pause, target: redis, at: 0.3, for: 0.3}
checks:
  - invariant: no-lost-increments
  - recovery: {name: first-ok-after-heal, deadline_s: 2}
"""

MUTANT = """\
name: counter-lost-update
target: sample_targets:LostUpdateCounter
topology: {workers: {count: 4}}
workload: {duration_s: 5, interval_ms: 0, ops_per_worker: 150}
checks:
  - invariant: no-lost-increments
"""

STALLED = """\
name: counter-stalled-overlap
target: sample_targets:StalledOverlapCounter
topology: {workers: {count: 2}}
workload: {duration_s: 10, interval_ms: 0, ops_per_worker: 1}
checks:
  - invariant: no-lost-increments
"""


def make_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """scenarios/ with the sample targets, one good (fault + recovery) and one mutant scenario."""
    d = pytester.mkdir("scenarios")
    (d / "sample_targets.py").write_text((HERE / "sample_targets.py").read_text())
    (d / "good.yaml").write_text(GOOD)
    (d / "mutant.yaml").write_text(MUTANT)
    return pytester


def load_support():  # for tests outside this directory
    return sys.modules[__name__]
