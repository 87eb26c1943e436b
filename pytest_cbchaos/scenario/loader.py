"""Load scenario YAML with located errors: file, line (from yaml node marks), key, value, expected.

Three passes: YAML syntax (yaml's own marks), JSON Schema shape (``schema.json``; the failing
path is mapped back to its node's line), then semantics that need the target registry
(known target, invariant ids, fault targets declared in the topology, timeline bounds).
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pytest_cbchaos.faults.kinds import FAULT_KINDS
from pytest_cbchaos.params import Params, allowed_keys
from pytest_cbchaos.renames import RENAMED, rename_params
from pytest_cbchaos.scenario.errors import ScenarioError, ScenarioErrors
from pytest_cbchaos.scenario.files import discover, is_scenario_file  # noqa: F401 (re-exported)
from pytest_cbchaos.scenario.model import (
    HOST_FAULTS, HOST_TARGET, PROCESS_FAULTS, PROXY_FAULTS, REDIS_ACTIONS, SENTINEL_FAULTS, Budgets, CheckSpec,
    CLUSTER_FAULTS, REPLICATED_FAULTS, FaultSpec, Scenario, Topology, Workload,
)

Path_ = tuple[Any, ...]


@functools.cache
def schema() -> dict[str, Any]:
    """``schema.json`` with the fault ``kind`` enum filled in from the one fault table."""
    s = json.loads(resources.files("pytest_cbchaos.scenario").joinpath("schema.json").read_text("utf-8"))
    s["$defs"]["fault"]["properties"]["kind"]["enum"] = list(FAULT_KINDS)
    return s


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _index_marks(node: yaml.Node, file: str, path: Path_, marks: dict[Path_, int]) -> None:
    """Map every path to its 1-based line; reject duplicate keys (yaml silently keeps the last)."""
    marks[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise ScenarioError(file, key_node.start_mark.line + 1, _dotted(path + (key,)),
                                    "duplicate key", expected="each key once per mapping")
            seen.add(key)
            marks[path + (key,)] = key_node.start_mark.line + 1
            _index_marks(value_node, file, path + (key,), marks)
            marks[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_marks(item, file, path + (i,), marks)


def _line(marks: dict[Path_, int], path: Path_) -> int | None:
    while path and path not in marks:
        path = path[:-1]
    return marks.get(path)


def _parse(text: str, file: str) -> tuple[Any, dict[Path_, int]]:
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ScenarioError(file, mark.line + 1 if mark else None, "", f"YAML syntax error: {exc.problem or exc}",
                            expected="valid YAML (check indentation and quoting)") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(file, None, "", f"YAML error: {exc}") from None
    marks: dict[Path_, int] = {}
    if node is not None:
        _index_marks(node, file, (), marks)
    return data, marks


def _expected(error: jsonschema.ValidationError) -> str:
    s, v = error.schema, error.validator
    if v == "enum":
        return "one of " + ", ".join(map(str, s["enum"]))
    if v == "additionalProperties":
        return "one of the keys " + ", ".join(sorted(s.get("properties", {})))
    if v == "required":
        return "keys " + ", ".join(s["required"])
    if v == "type":
        return f"type {s['type']}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{v} {s[v]}"
    if v == "pattern":
        return f"a string matching {s['pattern']}"
    if v in ("minProperties", "maxProperties"):
        return "exactly one of " + ", ".join(sorted(s.get("properties", {})))
    return f"{v}: {s.get(v)!r}"


def _non_finite(data: Any, file: str, marks: dict[Path_, int], path: Path_ = ()) -> ScenarioError | None:
    """The first NaN or infinity anywhere (YAML ``.nan``/``.inf``): NaN passes every schema bound,
    since it compares false with all of them, so it is rejected before the schema runs."""
    if isinstance(data, float) and not math.isfinite(data):
        return ScenarioError(file, _line(marks, path), _dotted(path) or "<top level>", "not a finite number",
                             value=data, expected="a finite number")
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        err = _non_finite(value, file, marks, path + (key,))
        if err:
            return err
    return None


def _schema_error(data: Any, file: str, marks: dict[Path_, int]) -> ScenarioError | None:
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if not errors:
        return None
    error = jsonschema.exceptions.best_match(errors) or errors[0]
    path = tuple(error.absolute_path)
    key = _dotted(path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if extra:
            path = path + (extra[0],)
            return ScenarioError(file, _line(marks, path), _dotted(path), "unknown key",
                                 expected=_expected(error))
    if error.validator == "required":
        return ScenarioError(file, _line(marks, path), key or "<top level>", error.message, expected=_expected(error))
    return ScenarioError(file, _line(marks, path), key, "invalid value", value=error.instance,
                         expected=_expected(error))


def load_scenario(path: str | Path) -> Scenario:
    """Parse and validate one scenario file; raises :class:`ScenarioError`."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(file, None, "", f"cannot read file: {exc}") from None
    data, marks = _parse(text, file)
    if not isinstance(data, dict):
        raise ScenarioError(file, 1, "", "a scenario must be a YAML mapping", value=type(data).__name__,
                            expected="keys name, target, topology, workload, faults, checks, budgets, seed")
    err = _non_finite(data, file, marks) or _schema_error(data, file, marks)
    if err:
        raise err
    return _build(path, data, marks)


def _build(path: Path, data: dict[str, Any], marks: dict[Path_, int]) -> Scenario:
    from pytest_cbchaos.scenario.targets import TargetNotFound, resolve_target

    file = str(path)
    try:
        target = resolve_target(data["target"], base=path.parent)
    except TargetNotFound as exc:
        raise ScenarioError(file, _line(marks, ("target",)), "target", str(exc), value=data["target"],
                            expected=exc.expected) from None
    topo_raw = data.get("topology", {})
    workers = topo_raw.get("workers", {})
    topology = Topology(redis=topo_raw.get("redis"), opencode=topo_raw.get("opencode"),
                        proxies=tuple(topo_raw.get("proxies", target.default_proxies)),
                        workers=workers.get("count", 1), worker_kind=workers.get("kind", "thread"))
    problem = target.topology_error(topology)
    if problem:
        where, value, expected = problem
        raise ScenarioError(file, _line(marks, where), _dotted(where),
                            f"does not work with the other settings of target {target.name!r}", value=value,
                            expected=expected)
    wl = data.get("workload", {})
    params = dict(wl.get("params", {}))
    if target.params is not None:
        params = _renamed(file, marks, ("workload", "params"), target.params, params)
        _check_params(file, marks, ("workload", "params"), target.params, params, f"target {target.name!r}")
    problem = target.params_error(topology, params)
    if problem:
        where, value, expected = problem
        raise ScenarioError(file, _line(marks, where), _dotted(where),
                            f"does not work with the topology of target {target.name!r}", value=value, expected=expected)
    workload = Workload(duration_s=wl.get("duration_s", 2.0), ops_per_worker=wl.get("ops_per_worker", 200),
                        interval_ms=wl.get("interval_ms", 5.0), params=params)
    b = data.get("budgets", {})
    budgets = Budgets(wall_s=b.get("wall_s", 10.0), check_timeout_s=b.get("check_timeout_s", 5.0),
                      max_ops=b.get("max_ops", 5000))
    if budgets.wall_s < workload.duration_s:
        raise ScenarioError(file, _line(marks, ("budgets", "wall_s")), "budgets.wall_s",
                            "the wall budget is shorter than the workload", value=budgets.wall_s,
                            expected=f">= workload.duration_s ({workload.duration_s})")
    processes = set(target.processes(topology))
    clocks = {f"worker-{i}" for i in range(topology.workers)}
    faults = []
    for i, f in enumerate(data.get("faults", [])):
        fpath = ("faults", i)
        fs = FaultSpec(kind=f["kind"], target=f["target"], at=float(f.get("at", 0.0)), duration=f.get("for"),
                       every=f.get("every"), times=f.get("times"), stream=f.get("stream", "downstream"),
                       toxicity=float(f.get("toxicity", 1.0)), params=dict(f.get("params", {})),
                       line=_line(marks, fpath))
        if fs.kind in PROXY_FAULTS:
            allowed = set(topology.proxies)
        elif fs.kind in PROCESS_FAULTS:
            allowed = processes
        elif fs.kind in REDIS_ACTIONS:
            allowed = {"redis"} if topology.redis is not None or "redis" in processes else set()
        elif fs.kind in HOST_FAULTS:
            allowed = {HOST_TARGET}
        elif fs.kind in SENTINEL_FAULTS:
            allowed = {"redis"} if (topology.redis or {}).get("sentinel") is not None else set()
        elif fs.kind in REPLICATED_FAULTS or fs.kind in CLUSTER_FAULTS:
            kinds = ("sentinel", "cluster") if fs.kind in REPLICATED_FAULTS else ("cluster",)
            allowed = {"redis"} if any((topology.redis or {}).get(k) is not None for k in kinds) else set()
        else:
            allowed = clocks
        _check_params(file, marks, fpath + ("params",), FAULT_KINDS[fs.kind].params, fs.params,
                      f"a {fs.kind!r} fault")
        if fs.target not in allowed:
            raise ScenarioError(file, _line(marks, fpath + ("target",)), _dotted(fpath + ("target",)),
                                f"no such {fs.family} target for a {fs.kind!r} fault", value=fs.target,
                                expected="one of " + (", ".join(sorted(allowed)) or "(none: declare it in topology)"))
        if fs.at >= workload.duration_s:
            raise ScenarioError(file, _line(marks, fpath + ("at",)), _dotted(fpath + ("at",)),
                                "fault starts after the workload ends", value=fs.at,
                                expected=f"< workload.duration_s ({workload.duration_s})")
        if fs.every is not None and fs.duration is not None and fs.duration >= fs.every:
            raise ScenarioError(file, _line(marks, fpath + ("for",)), _dotted(fpath + ("for",)),
                                "a repeated fault must heal before it repeats", value=fs.duration,
                                expected=f"< every ({fs.every})")
        if fs.kind == "pause" and fs.duration is None:
            raise ScenarioError(file, _line(marks, fpath), _dotted(fpath), "a pause needs 'for' (it must be resumed)",
                                expected="for: <seconds>")
        faults.append(fs)
    checks = []
    for i, c in enumerate(data.get("checks", [])):
        cpath = ("checks", i)
        (kind, value), = c.items()
        if kind == "invariant":
            if value not in target.invariants:
                raise ScenarioError(file, _line(marks, cpath + (kind,)), _dotted(cpath + (kind,)),
                                    f"unknown invariant for target {target.name!r}", value=value,
                                    expected="one of " + ", ".join(target.invariants))
            checks.append(CheckSpec("invariant", value, line=_line(marks, cpath)))
        elif kind == "linearizability":
            params = {"model": value} if isinstance(value, str) else dict(value)
            model = params.get("model", target.default_model)
            known = _model_names()
            if known is not None and model not in known:
                raise ScenarioError(file, _line(marks, cpath + (kind,)), _dotted(cpath + (kind,)),
                                    "unknown linearizability model", value=model, expected="one of " + ", ".join(known))
            checks.append(CheckSpec("linearizability", model, params, line=_line(marks, cpath)))
        else:
            checks.append(CheckSpec("recovery", value["name"], dict(value), line=_line(marks, cpath)))
    if not checks:
        raise ScenarioError(file, 1, "checks", "a scenario needs at least one check", expected="checks: [...]")
    return Scenario(path=path, name=data["name"], target=data["target"], description=data.get("description", ""),
                    markers=tuple(data.get("markers", ())), tags=tuple(data.get("tags", ())),
                    covers=tuple(data.get("covers", ())), seed=data.get("seed"), topology=topology,
                    workload=workload, faults=tuple(faults), checks=tuple(checks), budgets=budgets, raw=data)


def _renamed(file: str, marks: dict[Path_, int], ppath: Path_, declared: Params, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` under the canonical names, warning once per deprecated key (docs/breaker.md#names)."""
    def where(key: str) -> str:
        return f"{file}:{_line(marks, ppath + (key,))}: {_dotted(ppath + (key,))}"

    out, clash = rename_params(given, declared, where)
    if clash is not None:
        new = RENAMED["workload.params"][clash]
        raise ScenarioError(file, _line(marks, ppath + (clash,)), _dotted(ppath + (clash,)),
                            f"given under its deprecated name and as {new}", value=clash, expected=f"only {new}")
    for old, new in RENAMED["workload.params"].items():
        if old in given and new in out and new not in given:
            marks[ppath + (new,)] = marks.get(ppath + (old,), marks.get(ppath, 1))
    return out


def _check_params(file: str, marks: dict[Path_, int], ppath: Path_, declared: Params, given: dict[str, Any],
                  owner: str) -> None:
    """Every given key declared and well typed, every required one present (docs/scenarios.md, "Parameters")."""
    for key, value in given.items():
        kpath = ppath + (key,)
        if key not in declared:
            raise ScenarioError(file, _line(marks, kpath), _dotted(kpath), f"unknown parameter of {owner}",
                                value=key, expected=allowed_keys(declared))
        problem = declared[key].problem(value)
        if problem:
            raise ScenarioError(file, _line(marks, kpath), _dotted(kpath), f"bad parameter of {owner}",
                                value=value, expected=problem)
    for key, param in declared.items():
        if param.required and key not in given:
            raise ScenarioError(file, _line(marks, ppath), _dotted(ppath + (key,)), f"missing parameter of {owner}",
                                expected=f"{key}: {param.expected()}")


def load_many(paths: list[Path]) -> list[Scenario]:
    """Load all files; raise :class:`ScenarioErrors` listing every broken one."""
    out, errors = [], []
    for p in paths:
        try:
            out.append(load_scenario(p))
        except ScenarioError as exc:
            errors.append(exc)
    if errors:
        raise ScenarioErrors(errors)
    return out


def _model_names() -> list[str] | None:
    """Registered checker models, or None while the checker is not importable (the check then skips)."""
    try:
        from pytest_cbchaos.linearizability.models import model_names
    except Exception:
        return None
    return model_names()
