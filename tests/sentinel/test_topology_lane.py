"""The report's topology lane on a real Sentinel topology (docs/report-schema.md#topology-lane): after a
``failover()`` the test's record names the two primaries in order (the second as a sentinel's
``+switch-master`` announced it), the fault window on the same time base, report.json validates, the HTML and
the terminal show the lane, and a test without a topology has none."""

from __future__ import annotations

from pytest_cbchaos.faults.controller import FaultController
from pytest_cbchaos.report.collect import base_record
from pytest_cbchaos.report.html import render_html
from pytest_cbchaos.report.model import build_report, make_entry, validate
from pytest_cbchaos.report.terminal import render_summary


def test_failover_shows_both_primaries_and_the_window(cbchaos_redis_sentinel, request) -> None:
    topo = cbchaos_redis_sentinel
    faults = FaultController()
    nemesis = faults.sentinel(topo)
    old = topo.primary()
    window = nemesis.failover()
    new = topo.primary()
    assert new is not old
    faults.stop_watching()
    entry = make_entry("t::failover", "passed", 1.0, base_record(request.node, journal=faults.journal))
    plain = make_entry("t::plain", "passed", 0.1, None)
    report = build_report([entry, plain], seed=1)
    validate(report)
    lane = entry["topology"]
    assert lane["kind"] == "sentinel" and lane["errors"] == []
    assert [(p["node"], p["previous"]) for p in lane["primaries"]] == [(old.name, None), (new.name, old.name)]
    assert lane["primaries"][1]["via"] == "+switch-master"
    (w,) = lane["windows"]
    assert (w["id"], w["kind"], w["target"]) == (window.id, "failover", topo.master_name)
    assert lane["primaries"][0]["t_ms"] == 0.0 <= w["start_ms"] <= lane["primaries"][1]["t_ms"]
    assert w == {k: entry["faults"][0][k] for k in w}  # one time base for the faults and the lane
    assert "topology" not in plain
    html = render_html(report)
    assert html.count('class="topology-lane"') == 1
    assert f'data-node="{old.name}"' in html and f'data-node="{new.name}"' in html
    text = render_summary(report, [])
    assert f"topology t::failover: primaries {old.name} (t=0 ms" in text and f"{new.name} (t=" in text
    assert text.count("topology ") == 1


SCENARIO = """\
name: lane-failover
target: breaker-store
seed: 7
topology: {redis: {sentinel: {replicas: 2}}, workers: {count: 1}}
workload: {duration_s: 1.0, interval_ms: 20, ops_per_worker: 100,
           params: {fail_until_s: 0.5, socket_timeout_s: 0.5, wait_replicas: 2, wait_timeout_ms: 200}}
faults:
  - {kind: failover, target: redis, at: 0.2}
checks:
  - invariant: no-lost-writes
"""


def test_a_scenario_record_carries_the_lane(cbchaos_redis_sentinel, cbchaos_env, tmp_path) -> None:
    from pytest_cbchaos.scenario.loader import load_scenario
    from pytest_cbchaos.scenario.runner import run_scenario

    path = tmp_path / "lane.scenario.yaml"
    path.write_text(SCENARIO)
    old = cbchaos_redis_sentinel.primary()
    rec = run_scenario(load_scenario(path), env=cbchaos_env).to_record()
    new = cbchaos_redis_sentinel.primary()
    lane = rec["topology"]
    assert [(p["node"], p["via"]) for p in lane["primaries"]] == [
        (old.name, "sentinel majority (SENTINEL GET-MASTER-ADDR-BY-NAME)"), (new.name, "+switch-master")]
    (w,) = lane["windows"]
    assert w["kind"] == "failover" and 0 < lane["primaries"][0]["t_ms"] <= w["start_ms"] + 50
    assert w["start_ms"] <= lane["primaries"][1]["t_ms"]
    validate(build_report([make_entry("s::lane", "passed", 1.0, rec)], seed=7))
