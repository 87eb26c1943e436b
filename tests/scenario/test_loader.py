"""Loader: located errors (file, line, key, value, expected) and the shipped scenarios."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from pytest_cbchaos.scenario.errors import ScenarioError
from pytest_cbchaos.scenario.loader import discover, load_many, load_scenario, schema

ROOT = Path(__file__).resolve().parents[2]
TARGET = "sample_targets:CounterTarget"


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "sample_targets.py").write_text((Path(__file__).parent / "sample_targets.py").read_text())
    p = tmp_path / "x.scenario.yaml"
    p.write_text(text)
    return p


def _err(tmp_path: Path, text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(_write(tmp_path, text))
    return info.value


BASE = f"name: s1\ntarget: {TARGET}\nchecks:\n  - invariant: no-lost-increments\n"


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_valid_minimal_scenario(tmp_path: Path) -> None:
    s = load_scenario(_write(tmp_path, BASE))
    assert s.name == "s1" and s.checks[0].name == "no-lost-increments" and s.workload.duration_s == 2.0


def test_unknown_key_names_line_key_and_allowed(tmp_path: Path) -> None:
    e = _err(tmp_path, BASE + "workload:\n  duration_s: 1\n  durtion: 3\n")
    assert (e.line, e.key) == (7, "workload.durtion")
    assert "unknown key" in str(e) and "duration_s" in str(e) and str(e).startswith(str(tmp_path / "x.scenario.yaml") + ":7:")


def test_bad_enum_names_value_and_allowed_values(tmp_path: Path) -> None:
    e = _err(tmp_path, BASE + "faults:\n  - kind: latncy\n    target: redis\n")
    assert e.line == 6 and e.key == "faults[0].kind" and e.value == "latncy"
    assert "one of latency" in str(e)


def test_wrong_type(tmp_path: Path) -> None:
    e = _err(tmp_path, BASE + "seed: abc\n")
    assert (e.line, e.key, e.value) == (5, "seed", "abc") and "integer" in str(e)


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    e = _err(tmp_path, "name: s1\ntarget: [unclosed\nchecks: []\n")
    assert e.line is not None and "YAML syntax error" in str(e)


def test_duplicate_key(tmp_path: Path) -> None:
    e = _err(tmp_path, BASE + "seed: 1\nseed: 2\n")
    assert e.line == 6 and "duplicate key" in str(e)


def test_unknown_invariant_lists_the_targets_invariants(tmp_path: Path) -> None:
    e = _err(tmp_path, f"name: s1\ntarget: {TARGET}\nchecks:\n  - invariant: CB-99\n")
    assert e.line == 4 and e.value == "CB-99" and "no-lost-increments" in str(e)


def test_unknown_target(tmp_path: Path) -> None:
    e = _err(tmp_path, "name: s1\ntarget: breaker\nchecks:\n  - invariant: x\n")
    assert e.line == 2 and e.key == "target" and "breaker-store" in str(e)


def test_fault_target_must_exist(tmp_path: Path) -> None:
    e = _err(tmp_path, BASE + "faults:\n  - {kind: latency, target: nowhere}\n")
    assert e.key == "faults[0].target" and e.value == "nowhere" and e.line == 6


def test_fault_after_workload_end(tmp_path: Path) -> None:
    e = _err(tmp_path, BASE + "workload: {duration_s: 1}\nfaults:\n  - {kind: pause, target: redis, at: 2, for: 0.1}\n")
    assert e.key == "faults[0].at"


def test_pause_needs_a_duration(tmp_path: Path) -> None:
    e = _err(tmp_path, BASE + "faults:\n  - {kind: pause, target: redis}\n")
    assert "needs 'for'" in str(e)


def test_repeated_fault_must_heal_first(tmp_path: Path) -> None:
    e = _err(tmp_path, BASE + "faults:\n  - {kind: pause, target: redis, for: 1, every: 0.5}\n")
    assert e.key == "faults[0].for"


def test_sentinel_faults_need_a_sentinel_topology(tmp_path: Path) -> None:
    head = "name: s1\ntarget: breaker-store\nchecks:\n  - invariant: no-lost-writes\n"
    e = _err(tmp_path, head + "topology: {redis: {backend: binary}}\nfaults:\n  - {kind: failover, target: redis}\n")
    assert e.key == "faults[0].target" and e.value == "redis" and e.line == 7
    ok = load_scenario(_write(tmp_path, head + "topology: {redis: {sentinel: {replicas: 2}}}\n"
                                        "faults:\n  - {kind: isolate_primary, target: redis, for: 1}\n"))
    assert ok.faults[0].kind == "isolate_primary" and ok.topology.redis == {"sentinel": {"replicas": 2}}


def test_cluster_faults_need_a_cluster_topology(tmp_path: Path) -> None:
    head = "name: c1\ntarget: breaker-store\nchecks:\n  - invariant: no-lost-writes\n"
    e = _err(tmp_path, head + "topology: {redis: {sentinel: {replicas: 2}}}\nfaults:\n  - {kind: migrate_slot, target: redis}\n")
    assert e.key == "faults[0].target" and e.value == "redis" and e.line == 7
    e = _err(tmp_path, head + "topology: {redis: {cluster: {shards: 3}}}\nfaults:\n"
                              "  - {kind: migrate_slot, target: redis, params: {slot: 16384}}\n")
    assert e.key == "faults[0].params.slot" and e.value == 16384 and e.line == 7
    e = _err(tmp_path, head + "topology: {redis: {cluster: {shards: 3}}}\nfaults:\n  - {kind: replication_lag, target: redis}\n")
    assert e.key == "faults[0].params.ms" and e.line == 7
    e = _err(tmp_path, head + "topology: {redis: {cluster: {shards: 3}}}\nworkload: {params: {wait_replicas: 1}}\n")
    assert (e.key, e.value, e.line) == ("workload.params.wait_replicas", 1, 6) and "RedisCluster" in str(e)
    for topo in ("{sentinel: {replicas: 2}}", "{cluster: {shards: 3}}"):  # a lag on either replicated topology
        ok = load_scenario(_write(tmp_path, head + f"topology: {{redis: {topo}}}\nfaults:\n"
                                            "  - {kind: replication_lag, target: redis, for: 1, params: {ms: 50}}\n"))
        assert ok.faults[0].params == {"ms": 50}
        ok = load_scenario(_write(tmp_path, head + f"topology: {{redis: {topo}}}\nfaults:\n"
                                            "  - {kind: isolate_primary, target: redis, for: 1}\n"))
        assert ok.faults[0].kind == "isolate_primary"
    e = _err(tmp_path, head + "topology: {redis: {backend: binary}}\nfaults:\n  - {kind: isolate_primary, target: redis}\n")
    assert e.key == "faults[0].target" and e.value == "redis" and e.line == 7


def test_shipped_scenarios_load_and_cover_the_spec_lists() -> None:
    scenarios = load_many(discover([ROOT / "scenarios"]))
    assert len(scenarios) >= 12
    names = [s.name for s in scenarios]
    assert len(set(names)) == len(names)
    by_target = {t: [s for s in scenarios if s.target == t] for t in ("breaker-store", "recovery", "stream")}
    kinds = {f.kind for s in by_target["breaker-store"] for f in s.faults}
    assert {"latency", "reset_peer", "partition", "evict", "clock_skew", "kill", "failover", "isolate_primary",
            "migrate_slot", "replication_lag"} <= kinds
    assert any(f.target == "probe-owner" for s in by_target["breaker-store"] for f in s.faults)
    rec = {(f.kind, f.target) for s in by_target["recovery"] for f in s.faults}
    assert ("kill", "opencode") in rec and ("timeout", "opencode-events") in rec and ("latency", "opencode-control") in rec
    assert any(s.topology.opencode and s.topology.opencode.get("script") == "stall" for s in by_target["recovery"])
    st = {(f.kind, f.target) for s in by_target["stream"] for f in s.faults}
    assert ("reset_peer", "redis-producer") in st and ("down", "redis-consumer") in st
    for s in scenarios:  # each fits the "<= ~10 s on embedded defaults" rule (opencode ones are slow-marked)
        assert s.workload.duration_s <= 10 and ("slow" in s.markers or s.budgets.wall_s <= 15)


def test_linearizability_model_by_name_and_unknown_model_located(tmp_path: Path) -> None:
    ok = load_scenario(_write(tmp_path, "name: s1\ntarget: breaker-store\nchecks:\n  - linearizability: breaker-store\n"))
    assert ok.checks[0].kind == "linearizability" and ok.checks[0].name == "breaker-store"
    e = _err(tmp_path, "name: s1\ntarget: breaker-store\nchecks:\n  - invariant: CB-3\n  - linearizability: brekaer\n")
    assert e.line == 5 and e.value == "brekaer" and "breaker-store" in str(e)


def test_recovery_script_enum(tmp_path: Path) -> None:
    e = _err(tmp_path, "name: s1\ntarget: recovery\ntopology: {opencode: {script: stal}}\nchecks:\n  - invariant: REC-1\n")
    assert e.value == "stal" and "stall-once" in str(e)


@pytest.mark.parametrize("tail, line, key, shown", [
    ("workload:\n  duration_s: .nan\n", 6, "workload.duration_s", "nan"),
    ("workload:\n  duration_s: 2\n  interval_ms: .inf\n", 7, "workload.interval_ms", "inf"),
    ("budgets:\n  wall_s: .NaN\n", 6, "budgets.wall_s", "nan"),
    ("faults:\n  - kind: latency\n    target: redis\n    at: -.inf\n", 8, "faults[0].at", "-inf"),
    ("workload:\n  params:\n    rate: .nan\n", 7, "workload.params.rate", "nan"),
])
def test_nan_and_infinity_are_rejected_where_they_stand(tmp_path: Path, tail: str, line: int, key: str,
                                                        shown: str) -> None:
    e = _err(tmp_path, BASE + tail)
    assert (e.line, e.key) == (line, key)
    assert str(e).endswith(f": {key}: not a finite number; got {shown}; expected a finite number")


@pytest.mark.parametrize("opencode, line, key, value, expected", [
    ("{heartbeat_interval_s: 4, sse_silence_timeout_s: 5}", 4, "topology.opencode.sse_silence_timeout_s", 5,
     "expected >= 1.5 * heartbeat_interval = 6 (runner sse_silence_timeout)"),
    ("{probe_timeout_s: 60}", 4, "topology.opencode.probe_timeout_s", 60,
     "expected 0.1 <= probe_timeout <= 30 (runner probe_timeout)"),
])
def test_recovery_settings_that_cannot_work_together_are_loader_errors(tmp_path: Path, opencode: str, line: int,
                                                                       key: str, value: object, expected: str) -> None:
    p = tmp_path / "x.scenario.yaml"
    p.write_text(f"name: r\ntarget: recovery\ntopology:\n  opencode: {opencode}\nchecks:\n  - invariant: REC-1\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(p)
    e = info.value
    assert (e.line, e.key, e.value) == (line, key, value)
    assert str(e).endswith(f"does not work with the other settings of target 'recovery'; got {value!r}; {expected}")
