"""``checks: - linearizability: breaker-store`` in a scenario: the project's atomic store is linearizable
(timeline.html written and linked), the non-atomic failure count (mutant) is ILLEGAL and fails the run."""

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
workload: {{duration_s: 1.2, interval_ms: 2, ops_per_worker: 400,
           params: {{store_factory: "sample_stores:{factory}", fail_from_s: 0.0, fail_until_s: 0.8,
                     cooldown_s: 0.05, lease_s: 0.3, failure_threshold: 4}}}}
checks:
  - linearizability: breaker-store
budgets: {{wall_s: 10, check_timeout_s: 20}}
"""


def test_linearizability_check_passes_atomic_store_and_catches_mutant(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_cbchaos.servers.toxiproxy")
    d = pytester.mkdir("scenarios")
    (d / "sample_stores.py").write_text((HERE / "sample_stores.py").read_text())
    (d / "atomic.yaml").write_text(SCENARIO.format(name="lin-atomic", factory="memory"))
    (d / "mutant.yaml").write_text(SCENARIO.format(name="lin-mutant", factory="nonatomic_failures"))
    r = pytester.runpytest(*PLUGINS, "scenarios", "--cbchaos-report", "rep", "-p", "no:cacheprovider",
                           "--cbchaos-redis-backend", "fakeredis")
    report = json.loads((pytester.path / "rep" / "report.json").read_text())
    by_name = {t["name"]: t for t in report["tests"]}
    good, bad = by_name["lin-atomic"], by_name["lin-mutant"]
    assert good["outcome"] == "passed", json.dumps(good["checks"])[:2000]
    lin = good["checks"][0]
    assert lin["verdict"] == "ok" and lin["measured"]["ops"] > 100
    assert Path(lin["measured"]["timeline"]).name == "timeline.html"
    assert Path(lin["measured"]["timeline"]).exists()  # kept for the report link although the scenario passed
    html = (pytester.path / "rep" / "report.html").read_text()
    assert "timeline.html" in html
    assert bad["outcome"] == "failed"
    lin = bad["checks"][0]
    assert lin["verdict"] == "violated" and "ILLEGAL" in lin["detail"], lin["detail"]
    assert lin["counterexample"], "an ILLEGAL verdict carries its counterexample"
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    r.stdout.fnmatch_lines(["*FAIL*linearizability:breaker-store*ILLEGAL*"])
