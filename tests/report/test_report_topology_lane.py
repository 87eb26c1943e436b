"""The topology lane's own logic on scripted observations (docs/report-schema.md#topology-lane): one entry per
primary change per shard whatever the number of observers, one time base with the faults, and no lane (terminal,
HTML) for a test without one. The live lanes: tests/sentinel/test_topology_lane.py, test_cluster_split_brain.py."""

from __future__ import annotations

from pytest_cbchaos.report.html import render_html
from pytest_cbchaos.report.model import build_report, make_entry, validate
from pytest_cbchaos.report.terminal import render_summary
from pytest_cbchaos.report.topology import TopologyLane, lane_record, render_lane, terminal_lines, time_base


def _window(id: int, start_ns: int, end_ns: int | None) -> dict:
    return {"id": id, "kind": "isolate_primary", "target": "cluster-0", "params": {}, "start_ns": start_ns,
            "end_ns": end_ns}


def test_repeated_observations_of_one_change_make_one_entry_per_shard() -> None:
    lane = TopologyLane("cluster")
    assert lane.observe("cluster-0", "ROLE", shard="a", t_ns=1_000_000)
    assert lane.observe("cluster-1", "ROLE", shard="b", t_ns=1_000_000)
    assert not lane.observe("cluster-0", "ROLE", shard="a", t_ns=2_000_000)
    assert lane.observe("cluster-3", "ROLE", shard="a", t_ns=5_000_000)
    assert not lane.observe("cluster-3", "ROLE", shard="a", t_ns=6_000_000)
    assert [(p["node"], p["previous"], p["shard"]) for p in lane.primaries()] == [
        ("cluster-0", None, "a"), ("cluster-1", None, "b"), ("cluster-3", "cluster-0", "a")]


def test_the_lane_and_the_faults_share_the_earliest_time_base() -> None:
    lane = TopologyLane("sentinel")
    lane.observe("redis-0", "majority", t_ns=1_000_000)
    lane.observe("redis-1", "+switch-master", previous="redis-0", t_ns=9_000_000)
    windows = [_window(1, 3_000_000, 12_000_000)]
    t0 = time_base(windows, lane)
    assert t0 == 1_000_000 and time_base([], None) is None
    faults = [dict(w, start_ms=(w["start_ns"] - t0) / 1e6, end_ms=(w["end_ns"] - t0) / 1e6) for w in windows]
    rec = lane_record(lane, faults, t0)
    assert [p["t_ms"] for p in rec["primaries"]] == [0.0, 8.0]
    assert rec["windows"] == [{"id": 1, "kind": "isolate_primary", "target": "cluster-0", "start_ms": 2.0,
                               "end_ms": 11.0}]
    entry = make_entry("t::lane", "passed", 0.1, {"kind": "test", "name": "lane", "target": None, "faults": faults,
                                                  "checks": [], "latencies": [], "transitions": [], "recoveries": {},
                                                  "probes": [], "topology": rec})
    plain = make_entry("t::plain", "passed", 0.1, None)
    report = build_report([entry, plain], seed=1)
    validate(report)
    html = render_html(report)
    assert html.count('class="topology-lane"') == 1 and html.count('class="lane-primary"') == 2
    assert html.count('class="lane-fault"') == 1
    assert terminal_lines(entry) == ["topology t::lane: primaries redis-0 (t=0 ms, majority), redis-1 (t=8 ms, "
                                     "+switch-master); windows isolate_primary 2..11 ms"]
    assert "topology t::lane" in render_summary(report, [])
    assert terminal_lines(plain) == [] and render_lane(plain) == ""


def test_an_active_window_and_an_empty_lane() -> None:
    lane = TopologyLane("cluster")
    lane.observe("cluster-0", "ROLE", shard="a", t_ns=0)
    rec = lane_record(lane, [dict(_window(1, 0, None), start_ms=0.0, end_ms=None)], 0)
    assert terminal_lines({"nodeid": "t", "topology": rec})[0].endswith("windows isolate_primary 0..(active) ms")
    empty = {"nodeid": "t", "topology": lane_record(TopologyLane("sentinel"), [], 0)}
    assert render_lane(empty) == "" and terminal_lines(empty) == []
