"""Per-test report records: what scenarios and ordinary chaos tests contribute to report.json.

A record travels from the worker to the controller as a JSON string in ``report.user_properties``
under the key ``cbchaos`` (so xdist ships it), and is aggregated on the controller.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_cbchaos.report.topology import lane_record, time_base
from pytest_cbchaos.report.verdict import Audit, judge_record

USER_PROPERTY = "cbchaos"
EXTRA_KEY = pytest.StashKey[dict]()


def add(node: pytest.Item | pytest.FixtureRequest, **data: Any) -> None:
    """Attach report data to the running test (public API for fixtures and user code).

    Known keys: ``checks`` (list of ``{name, kind, verdict, detail, counterexample}``), ``latencies``,
    ``transitions``, ``recoveries`` (dict), ``probes`` (list of ``{id, value, unit, note}``),
    ``artifacts`` (directory of the test's history views), ``ops_observed`` (int: operations the checks saw; 0 makes
    the verdict an error, docs/report-schema.md). Lists are extended, dicts merged, ints summed.
    """
    item = getattr(node, "node", node)
    extra = item.stash.setdefault(EXTRA_KEY, {})
    for key, value in data.items():
        if isinstance(value, list):
            extra.setdefault(key, []).extend(value)
        elif isinstance(value, dict):
            extra.setdefault(key, {}).update(value)
        elif key == "ops_observed":
            extra[key] = (extra.get(key) or 0) + int(value)
        else:
            extra[key] = value


def base_record(item: pytest.Item, *, result: Any = None, journal: Any = None) -> dict[str, Any] | None:
    """The record for ``item`` or None when the test used nothing of the kit worth reporting.

    The hooks hand over what the glue holds: a scenario's ``result`` and the test's fault ``journal``."""
    if result is not None:
        return result.to_record()
    extra = dict(item.stash.get(EXTRA_KEY, None) or {})
    lane = getattr(journal, "lane", None)
    faults = _windows(journal, lane)
    failures = journal.failures() if journal is not None else []
    chaos = item.get_closest_marker("chaos")
    if not extra and not faults and not failures and chaos is None and lane is None:
        return None
    rec: dict[str, Any] = {"kind": "test", "name": item.name, "target": None, "faults": faults,
                           "checks": [], "latencies": [], "transitions": [], "recoveries": {}, "probes": []}
    if lane is not None:
        rec["topology"] = lane_record(lane, faults, time_base(journal.to_dicts(), lane) or 0)
    if chaos is not None:
        rec["declared_faults"] = [str(a) for a in chaos.args]
    ops = extra.pop("ops_observed", None)
    rec.update(extra)
    counts = journal.counts() if journal is not None else {"requested": 0, "applied": 0, "failed": 0}
    audit = Audit(faults_requested=counts["requested"], faults_applied=counts["applied"],
                  faults_failed=counts["failed"], ops_observed=ops,
                  fault_errors=[f"{f.kind} on {f.target}: {f.error}" for f in failures])
    rec.update(judge_record({**rec, "audit": audit.to_dict()}).fields())
    return rec


def _windows(journal: Any, lane: Any = None) -> list[dict[str, Any]]:
    """The journal's windows with ``start_ms``/``end_ms`` since the first fault or the lane's first
    observation, whichever is earlier (one time base for faults and the topology lane)."""
    if journal is None:
        return []
    windows = journal.to_dicts()
    t0 = time_base(windows, lane)
    if t0 is None:
        return []
    out = []
    for w in windows:
        w = dict(w)
        w["start_ms"] = round((w["start_ns"] - t0) / 1e6, 3)
        w["end_ms"] = None if w.get("end_ns") is None else round((w["end_ns"] - t0) / 1e6, 3)
        out.append(w)
    return out


def encode(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, default=str)


def verdict_fields(record: dict[str, Any]) -> dict[str, Any]:
    """``verdict``, ``verdict_reasons`` and ``audit`` of a record: the ones it carries (computed where the
    run happened) or, for a record without them, judged from its checks."""
    if "verdict" in record and "audit" in record:
        return {"verdict": record["verdict"], "verdict_reasons": list(record.get("verdict_reasons") or []),
                "audit": record["audit"]}
    return judge_record(record).fields()
