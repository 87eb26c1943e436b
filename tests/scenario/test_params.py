"""Typed scenario params: every target declares its ``workload.params``, every fault kind its
``params`` (faults/kinds.py); the loader rejects the rest, located, naming the allowed keys."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from pytest_cbchaos import cli
from pytest_cbchaos.faults.controller import FaultController, ProcessFaults
from pytest_cbchaos.faults.kinds import FAULT_KINDS
from pytest_cbchaos.scenario.errors import ScenarioError
from pytest_cbchaos.scenario.loader import load_scenario, schema
from pytest_cbchaos.scenario.targets import resolve_target

ROOT = Path(__file__).resolve().parents[2]
LATENCY = (ROOT / "scenarios" / "breaker-redis-latency.yaml").read_text()


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    assert old in LATENCY
    p = tmp_path / "variant.scenario.yaml"
    p.write_text(LATENCY.replace(old, new, 1))
    return p


def _err(path: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value


MISSPELLED = [
    pytest.param("params: {failure_threshold: 3,", "params: {treshold: 3,", 7, "workload.params.treshold", "treshold",
                 "params failure_threshold, cooldown_s, lease_s", id="workload"),
    pytest.param("params: {ms: 150, jitter: 50}", "params: {msec: 150, jitter: 50}", 9, "faults[0].params.msec",
                 "msec", "params ms, jitter", id="fault"),
]


@pytest.mark.parametrize("old, new, line, key, value, expected", MISSPELLED)
def test_misspelled_param_is_located_with_the_allowed_keys(tmp_path: Path, old: str, new: str, line: int,
                                                           key: str, value: str, expected: str) -> None:
    path = _variant(tmp_path, old, new)
    e = _err(path)
    assert (e.line, e.key, e.value) == (line, key, value)
    assert str(e).startswith(f"{path}:{line}: {key}: unknown parameter of ")
    assert expected in str(e)


@pytest.mark.parametrize("old, new, line, key, value, expected", MISSPELLED)
def test_cbchaos_run_exits_4_on_a_misspelled_param(tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str,
                                                   new: str, line: int, key: str, value: str, expected: str) -> None:
    path = _variant(tmp_path, old, new)
    assert cli.main(["run", str(path)]) == 4
    err = capsys.readouterr().err
    assert f"{path}:{line}: {key}: unknown parameter" in err and expected in err and "Traceback" not in err


@pytest.mark.parametrize("old, new, key, value, expected", [
    ("failure_threshold: 3,", 'failure_threshold: "3",', "workload.params.failure_threshold", "3", "an integer >= 1"),
    ("failure_threshold: 3,", "failure_threshold: 0,", "workload.params.failure_threshold", 0, "an integer >= 1"),
    ("failure_threshold: 3,", "failure_threshold: true,", "workload.params.failure_threshold", True,
     "an integer >= 1"),
    ("cooldown_s: 0.3,", "cooldown_s: -1,", "workload.params.cooldown_s", -1, "a number >= 0"),
    ("{ms: 150, jitter: 50}", '{ms: "150", jitter: 50}', "faults[0].params.ms", "150", "an integer"),
    ("{ms: 150, jitter: 50}", "{ms: 1.5, jitter: 50}", "faults[0].params.ms", 1.5, "an integer"),
])
def test_mistyped_param_is_located(tmp_path: Path, old: str, new: str, key: str, value: object,
                                   expected: str) -> None:
    e = _err(_variant(tmp_path, old, new))
    assert (e.key, e.value) == (key, value) and f"expected {expected}" in str(e)


def test_missing_required_fault_param(tmp_path: Path) -> None:
    e = _err(_variant(tmp_path, "{kind: latency, target: redis, at: 0.2, for: 1.0, params: {ms: 150, jitter: 50}}",
                      "{kind: bandwidth, target: redis, at: 0.2, for: 1.0}"))
    assert (e.line, e.key) == (9, "faults[0].params.rate")
    assert "missing parameter" in str(e) and "rate: an integer" in str(e)


def test_a_toxic_value_out_of_bounds_loads_and_fails_when_applied(tmp_path: Path) -> None:
    """Bounds of toxic attributes are the controller's (check_toxic_params): the run records a failed
    fault (docs/report-schema.md, "Verdict and audit"; tests/report/test_verdict_audit.py)."""
    s = load_scenario(_variant(tmp_path, "{ms: 150, jitter: 50}", "{ms: -150, jitter: 50}"))
    assert s.faults[0].params == {"ms": -150, "jitter": 50}


def test_fault_without_params_rejects_any(tmp_path: Path) -> None:
    e = _err(_variant(tmp_path, "kind: latency, target: redis, at: 0.2, for: 1.0, params: {ms: 150, jitter: 50}",
                      "kind: down, target: redis, at: 0.2, for: 1.0, params: {ms: 150}"))
    assert e.key == "faults[0].params.ms" and "expected no params" in str(e)


@pytest.mark.parametrize("old, new", [("threshold", "failure_threshold"), ("recovery_s", "cooldown_s"),
                                      ("reset_s", "cooldown_s")])
def test_deprecated_breaker_param_names_load_with_a_located_warning(tmp_path: Path, old: str, new: str) -> None:
    """docs/breaker.md#names: old scenario files keep working, each old key warned at its line."""
    text = (ROOT / "scenarios" / "gateway-provider-5xx.yaml").read_text()
    assert "cooldown_s: 30" in text
    p = tmp_path / "g.scenario.yaml"
    p.write_text(text.replace("cooldown_s: 30", f"{old}: 4" if old == "threshold" else f"{old}: 7"))
    with pytest.warns(DeprecationWarning) as caught:
        params = load_scenario(p).workload.params
    assert [str(w.message) for w in caught] == [f"{p}:7: workload.params.{old} is deprecated, use {new}"]
    assert old not in params and params[new] == (4 if old == "threshold" else 7)


def test_a_param_under_both_names_is_an_error(tmp_path: Path) -> None:
    e = _err(_variant(tmp_path, "cooldown_s: 0.3,", "cooldown_s: 0.3, recovery_s: 0.4,"))
    assert (e.line, e.key) == (7, "workload.params.recovery_s") and "only cooldown_s" in str(e)


def test_a_deprecated_name_still_gets_its_type_checked(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning):
        e = _err(_variant(tmp_path, "failure_threshold: 3,", "threshold: 0,"))
    assert (e.line, e.key, e.value) == (7, "workload.params.failure_threshold", 0)


def test_every_builtin_target_declares_its_params() -> None:
    for name in ("breaker-store", "recovery", "stream", "gateway"):
        params = resolve_target(name).params
        assert params, name
        assert all(p.problem(p.default) is None for p in params.values() if not p.required), name


def test_the_schema_enum_is_the_fault_table() -> None:
    assert schema()["$defs"]["fault"]["properties"]["kind"]["enum"] == list(FAULT_KINDS)


def _method(kind: str) -> object:
    if FAULT_KINDS[kind].family == "sentinel":
        from pytest_cbchaos.faults.sentinel import SentinelNemesis

        return getattr(SentinelNemesis, kind)
    if FAULT_KINDS[kind].family in ("replicated", "cluster"):
        from pytest_cbchaos.faults.cluster import ClusterNemesis

        return getattr(ClusterNemesis, kind)
    if FAULT_KINDS[kind].family == "process":
        return getattr(ProcessFaults, kind)
    if kind == "clock_skew":
        return FaultController.skew_clock
    return getattr(FaultController, kind, None)


@pytest.mark.parametrize("kind", [k for k, v in FAULT_KINDS.items() if v.family != "redis"])
def test_every_fault_kind_maps_onto_a_controller_method_taking_its_params(kind: str) -> None:
    method = _method(kind)
    assert callable(method), kind
    accepted = set(inspect.signature(method).parameters)
    assert set(FAULT_KINDS[kind].params) <= accepted, (kind, accepted)
