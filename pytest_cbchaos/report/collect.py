"""Per-test report records: what scenarios and ordinary chaos tests contribute to report.json.

A record travels from the worker to the controller as a JSON string in ``report.user_properties``
under the key ``cbchaos`` (so xdist ships it), and is aggregated on the controller.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

USER_PROPERTY = "cbchaos"
EXTRA_KEY = pytest.StashKey[dict]()


def add(node: pytest.Item | pytest.FixtureRequest, **data: Any) -> None:
    """Attach report data to the running test (public API for fixtures and user code).

    Known keys: ``checks`` (list of ``{name, kind, verdict, detail, counterexample}``), ``latencies``,
    ``transitions``, ``recoveries`` (dict), ``probes`` (list of ``{id, value, unit, note}``),
    ``history_path``, ``timeline_path``. Lists are extended, dicts merged.
    """
    item = getattr(node, "node", node)
    extra = item.stash.setdefault(EXTRA_KEY, {})
    for key, value in data.items():
        if isinstance(value, list):
            extra.setdefault(key, []).extend(value)
        elif isinstance(value, dict):
            extra.setdefault(key, {}).update(value)
        else:
            extra[key] = value


def base_record(item: pytest.Item) -> dict[str, Any] | None:
    """The record for ``item`` or None when the test used nothing of the kit worth reporting."""
    from pytest_cbchaos.scenario.pytest_hooks import RESULT_KEY

    result = item.stash.get(RESULT_KEY, None)
    if result is not None:
        return result.to_record()
    extra = item.stash.get(EXTRA_KEY, None)
    faults = _journal(item)
    chaos = item.get_closest_marker("chaos")
    if extra is None and not faults and chaos is None:
        return None
    rec: dict[str, Any] = {"kind": "test", "name": item.name, "target": None, "faults": faults,
                           "checks": [], "latencies": [], "transitions": [], "recoveries": {}, "probes": []}
    if chaos is not None:
        rec["declared_faults"] = [str(a) for a in chaos.args]
    rec.update(extra or {})
    return rec


def _journal(item: pytest.Item) -> list[dict[str, Any]]:
    try:
        from pytest_cbchaos.fixtures import FAULT_JOURNAL_KEY
    except Exception:
        return []
    journal = item.stash.get(FAULT_JOURNAL_KEY, None)
    if journal is None:
        return []
    windows = journal.to_dicts()
    if not windows:
        return []
    t0 = min(w["start_ns"] for w in windows)
    out = []
    for w in windows:
        w = dict(w)
        w["start_ms"] = round((w["start_ns"] - t0) / 1e6, 3)
        w["end_ms"] = None if w.get("end_ns") is None else round((w["end_ns"] - t0) / 1e6, 3)
        out.append(w)
    return out


def encode(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, default=str)


def verdict_of(record: dict[str, Any]) -> str:
    """Composed verdict of a record: violated > unknown > ok (skipped checks do not count)."""
    verdicts = [c.get("verdict") for c in record.get("checks", []) if c.get("enforced", True)]
    if any(v in ("violated", "illegal") for v in verdicts):
        return "violated"
    if "unknown" in verdicts:
        return "unknown"
    return "ok" if verdicts else "none"
