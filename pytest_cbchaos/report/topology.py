"""The topology lane of a report: which node was primary when, and each fault's window
(docs/report-schema.md#topology-lane).

A :class:`TopologyLane` collects primary changes as observers see them (a sentinel's ``+switch-master``, a
node's own ``ROLE``); :func:`lane_record` turns it into the record's ``topology`` entry on the same time
base as its ``faults``. Terminal, report.json and report.html render that one entry.
"""

from __future__ import annotations

import threading
import time
from html import escape
from typing import Any


class TopologyLane:
    """Thread-safe list of primary observations: ``{t_ns, node, previous, via}`` in arrival order.

    An observation that names the node already last seen as primary of the same shard adds nothing, so
    several observers (three sentinels publishing one ``+switch-master``) give one entry per change."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        self._primaries: list[dict[str, Any]] = []
        self._current: dict[str, str] = {}  # shard -> node
        self.errors: list[str] = []

    def observe(self, node: str, via: str, *, previous: str | None = None, shard: str = "",
                t_ns: int | None = None) -> bool:
        """Record ``node`` as the primary of ``shard`` (``""`` for one-primary topologies); True when new."""
        with self._lock:
            if self._current.get(shard) == node:
                return False
            entry = {"t_ns": time.monotonic_ns() if t_ns is None else t_ns, "node": node,
                     "previous": previous if previous is not None else self._current.get(shard), "via": via}
            if shard:
                entry["shard"] = shard
            self._current[shard] = node
            self._primaries.append(entry)
            return True

    def primaries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(p) for p in self._primaries]


def time_base(windows: list[dict[str, Any]], lane: TopologyLane | None) -> int | None:
    """The record's t0: the first fault's start or the lane's first observation, whichever is earlier."""
    starts = [w["start_ns"] for w in windows] + [p["t_ns"] for p in (lane.primaries() if lane else [])]
    return min(starts) if starts else None


def lane_record(lane: TopologyLane, faults: list[dict[str, Any]], t0: int) -> dict[str, Any]:
    """The ``topology`` entry: the primaries in order and the fault windows (``faults`` already on ``t0``)."""
    return {"kind": lane.kind,
            "primaries": [dict(p, t_ms=round((p["t_ns"] - t0) / 1e6, 3)) for p in lane.primaries()],
            "windows": [{k: f[k] for k in ("id", "kind", "target", "start_ms", "end_ms")} for f in faults],
            "errors": list(lane.errors)}


def terminal_lines(test: dict[str, Any]) -> list[str]:
    """One line per topology test: ``primaries: redis-0 (t=0 ms), redis-1 (t=812 ms, +switch-master)``."""
    lane = test.get("topology")
    if not lane or not lane.get("primaries"):
        return []
    shown = ", ".join(f"{p['node']} (t={p['t_ms']:.0f} ms, {p['via']})" for p in lane["primaries"])
    windows = ", ".join(f"{w['kind']} {w['start_ms']:.0f}..{_ms(w['end_ms'])} ms" for w in lane["windows"])
    return [f"topology {test['nodeid']}: primaries {shown}" + (f"; windows {windows}" if windows else "")]


def _ms(t: float | None) -> str:
    return "(active)" if t is None else f"{t:.0f}"


LANE_H, LEFT, WIDTH = 22, 110, 900


def render_lane(test: dict[str, Any]) -> str:
    """An SVG lane: one row per node that was primary (a bar from when it was seen primary until the next
    change of its shard), and the fault windows shaded; "" for a test without a lane."""
    lane = test.get("topology")
    if not lane or not lane.get("primaries"):
        return ""
    prims, windows = lane["primaries"], lane["windows"]
    end = max([p["t_ms"] for p in prims] + [w["end_ms"] or w["start_ms"] for w in windows] + [1.0]) * 1.05
    nodes = list(dict.fromkeys(p["node"] for p in prims))
    height = LANE_H * (len(nodes) + 1) + 10

    def x(t: float) -> float:
        return LEFT + (WIDTH - LEFT - 10) * t / end

    out = [f'<svg class="topology-lane" width="{WIDTH}" height="{height}" role="img" '
           f'aria-label="topology lane of {escape(test["nodeid"])}">',
           f'<text x="4" y="{LANE_H - 6}" font-size="11">faults</text>']
    for w in windows:
        x0, x1 = x(w["start_ms"]), x(w["end_ms"] if w["end_ms"] is not None else end)
        out.append(f'<rect class="lane-fault" x="{x0:.1f}" y="4" width="{max(2.0, x1 - x0):.1f}" height="{height - 8}" '
                   f'fill="#f4a261" fill-opacity="0.3"><title>{escape(w["kind"])} on {escape(w["target"])}</title>'
                   '</rect>')
        out.append(f'<text x="{x0 + 2:.1f}" y="{LANE_H - 6}" font-size="10">{escape(w["kind"])}</text>')
    for i, p in enumerate(prims):
        row = nodes.index(p["node"]) + 1
        nxt = next((q["t_ms"] for q in prims[i + 1:] if q.get("shard", "") == p.get("shard", "")), end)
        y = LANE_H * row + 4
        out.append(f'<rect class="lane-primary" data-node="{escape(p["node"])}" x="{x(p["t_ms"]):.1f}" y="{y}" '
                   f'width="{max(2.0, x(nxt) - x(p["t_ms"])):.1f}" height="{LANE_H - 8}" fill="#2a9d8f">'
                   f'<title>{escape(p["node"])} primary from t={p["t_ms"]:.0f} ms ({escape(p["via"])})</title></rect>')
    for row, node in enumerate(nodes, start=1):
        out.append(f'<text x="4" y="{LANE_H * row + LANE_H - 6}" font-size="11">{escape(node)}</text>')
    out.append("</svg>")
    rows = "".join(f'<tr><td>{p["t_ms"]:.0f} ms</td><td>{escape(p["node"])}</td>'
                   f'<td>{escape(str(p.get("previous") or ""))}</td><td>{escape(p["via"])}</td></tr>' for p in prims)
    return (f'<div class="topology" id="topology-{escape(test["nodeid"])}"><h4>topology ({escape(lane["kind"])}): '
            f'primaries</h4>{"".join(out)}<table class="primaries"><tr><th>t</th><th>primary</th><th>before</th>'
            f'<th>observed by</th></tr>{rows}</table></div>')
