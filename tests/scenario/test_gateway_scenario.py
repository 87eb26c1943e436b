"""The shipped gateway scenario passes; pointed at a breaker that never opens (mutant, through
``workload.params.breaker_factory``) the circuit-open checks fail and so does the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
PLUGINS = ["-p", "pytest_cbchaos.plugin.scenario", "-p", "pytest_cbchaos.plugin.report"]


def test_gateway_scenario_and_never_opening_breaker(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_cbchaos.gateway")
    shipped = (ROOT / "scenarios" / "gateway-provider-5xx.yaml").read_text()
    d = pytester.mkdir("scenarios")
    (d / "sample_gateway.py").write_text((HERE / "sample_gateway.py").read_text())
    (d / "good.yaml").write_text(shipped)
    (d / "mutant.yaml").write_text(shipped.replace("name: gateway-provider-5xx", "name: gateway-never-opens").replace(
        "params: {turns: 6", 'params: {breaker_factory: "sample_gateway:never_opens", turns: 6'))
    r = pytester.runpytest(*PLUGINS, "scenarios", "--cbchaos-report", "rep", "-p", "no:cacheprovider",
                           "--cbchaos-redis-backend", "fakeredis")
    report = json.loads((pytester.path / "rep" / "report.json").read_text())
    by_name = {t["name"]: t for t in report["tests"]}
    verdicts = {n: {c["name"]: c["verdict"] for c in t["checks"]} for n, t in by_name.items()}
    assert by_name["gateway-provider-5xx"]["outcome"] == "passed", verdicts
    assert by_name["gateway-never-opens"]["outcome"] == "failed", verdicts
    bad = verdicts["gateway-never-opens"]
    for name in ("invariant:circuit-opens", "invariant:provider-shielded", "invariant:state-shared",
                 "recovery:circuit-open-refusal"):
        assert bad[name] == "violated", (name, bad)
    assert bad["invariant:DS-3"] == "ok"  # the stream itself stays clean: the checks are specific
    assert r.ret == pytest.ExitCode.TESTS_FAILED
