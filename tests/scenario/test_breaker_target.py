"""The breaker-store target end to end (real Redis behind the real fault proxy), pointed at a user
store through ``store_factory``: the correct store passes, the non-atomic gate (mutant) breaks CB-3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PLUGINS = ["-p", "pytest_cbchaos.plugin.scenario", "-p", "pytest_cbchaos.plugin.report"]

SCENARIO = """\
name: {name}
target: breaker-store
topology: {{proxies: [redis], workers: {{count: 6}}}}
workload: {{duration_s: 1.5, interval_ms: 5, ops_per_worker: 1000,
           params: {{store_factory: "sample_stores:{factory}", fail_from_s: 0.0, fail_until_s: 0.7,
                     cooldown_s: 0.05, lease_s: 0.3, failure_threshold: 2}}}}
faults:
  - {{kind: latency, target: redis, at: 0.1, for: 0.3, params: {{ms: 20, jitter: 10}}}}
checks:
  - invariant: CB-3
  - invariant: CB-9
  - invariant: CB-15
  - invariant: CB-20
  - invariant: no-crash
  - invariant: recovers
"""


@pytest.fixture
def breaker_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytest.importorskip("pytest_cbchaos.servers.toxiproxy")
    d = pytester.mkdir("scenarios")
    (d / "sample_stores.py").write_text((HERE / "sample_stores.py").read_text())
    (d / "good.yaml").write_text(SCENARIO.format(name="breaker-good", factory="good"))
    (d / "racy.yaml").write_text(SCENARIO.format(name="breaker-racy", factory="racy"))
    return pytester


def test_breaker_target_passes_good_store_and_catches_racy_gate(breaker_project: pytest.Pytester) -> None:
    r = breaker_project.runpytest(*PLUGINS, "scenarios", "--cbchaos-report", "rep", "-p", "no:cacheprovider",
                                  "--cbchaos-redis-backend", "fakeredis")
    report = json.loads((breaker_project.path / "rep" / "report.json").read_text())
    by_name = {t["name"]: t for t in report["tests"]}
    good, racy = by_name["breaker-good"], by_name["breaker-racy"]
    assert good["outcome"] == "passed", json.dumps([c for c in good["checks"] if c["verdict"] != "ok"])[:3000]
    assert {t["to"] for t in good["transitions"]} >= {"open", "half_open", "closed"}
    assert good["faults"][0]["kind"] == "toxic:latency"
    assert racy["outcome"] == "failed"
    cb3 = next(c for c in racy["checks"] if c["name"] == "invariant:CB-3")
    assert cb3["verdict"] == "violated" and cb3["counterexample"]["second_claim"]["won"]
    assert r.ret == pytest.ExitCode.TESTS_FAILED
