"""Render report.json into one self-contained report.html (inline CSS/JS/SVG, no network).

Content is rendered server-side (readable without JavaScript); the data is also embedded as JSON
in a ``<script type="application/json">`` block with ``<`` escaped. Every user value is escaped.
"""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path
from typing import Any

from pytest_cbchaos.report.topology import render_lane

STATE_COLORS = {"closed": "#2e9d4f", "open": "#d23b3b", "half_open": "#e0a020", "forced_open": "#7a1f1f"}
FAULT_COLOR = "#f4a3a3"
WIDTH, LANE_H, PAD_L = 880, 16, 110

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{margin:28px 0 6px;font-size:18px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.badge{display:inline-block;padding:1px 8px;border-radius:8px;color:#fff;font-weight:600;font-size:12px}
.passed,.ok{background:#2e9d4f}ul.verdict-reasons{color:#a11}.failed,.violated,.illegal,.error{background:#d23b3b}
.skipped,.none{background:#888}.unknown{background:#e0a020}
section.test{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:12px 0}
section.test.is-failed{border-color:#d23b3b}
pre.counterexample{background:#fff3f3;border:1px solid #e7b4b4;padding:8px;overflow:auto;max-height:360px}
.meta{color:#555;font-size:12px}svg{background:#fff;border:1px solid #eee}
#controls{margin:8px 0}
p.headline{font-size:15px;font-weight:600;color:#a11;margin:4px 0 8px}
ul.counterexample-words{background:#fff3f3;border:1px solid #e7b4b4;padding:6px 6px 6px 24px}
"""

JS = """
document.getElementById('only-failed').addEventListener('change', function(e){
  document.querySelectorAll('section.test').forEach(function(s){
    s.style.display = (e.target.checked && !s.classList.contains('is-failed')) ? 'none' : '';
  });
});
"""


def _badge(text: str) -> str:
    t = escape(str(text))
    return f'<span class="badge {t}">{t.upper()}</span>'


def _x(t_ms: float, span: float) -> float:
    return PAD_L + (WIDTH - PAD_L - 10) * max(0.0, t_ms) / span


def _timeline(test: dict[str, Any]) -> str:
    faults, transitions, latencies = test["faults"], test["transitions"], test["latencies"]
    changes = {}
    for t in transitions:
        changes[str(t["worker"])] = changes.get(str(t["worker"]), 0) + 1
    if not (faults or latencies or any(n > 1 for n in changes.values())):
        return '<p class="meta">no timeline: no fault windows, latencies or state changes were recorded</p>'
    ends = [f.get("end_ms") or f.get("start_ms", 0) for f in faults] + [t["t_ms"] for t in transitions] \
        + [p["t_ms"] for p in latencies] + [1.0]
    span = max(ends) * 1.02 or 1.0
    workers = sorted({str(t["worker"]) for t in transitions} | {str(p["worker"]) for p in latencies})
    lanes = ["faults"] + [f"state {w}" for w in sorted({str(t['worker']) for t in transitions})]
    plot_h = 110 if latencies else 0
    top = 22  # the legend's row
    height = top + 20 + LANE_H * len(lanes) + plot_h + 40
    out = [f'<svg class="timeline" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    out.append(_legend(transitions, faults, latencies))
    lanes_top = top + 20
    for f in faults:  # fault windows shaded across all lanes
        x0 = _x(f.get("start_ms", 0), span)
        x1 = _x(f["end_ms"] if f.get("end_ms") is not None else span, span)
        label = f"{f['kind']} {f['target']} {json.dumps(f.get('params', {}), sort_keys=True)}"
        out.append(f'<rect class="fault-band" x="{x0:.1f}" y="{lanes_top}" width="{max(2.0, x1 - x0):.1f}" '
                   f'height="{height - lanes_top - 40}" fill="{FAULT_COLOR}" fill-opacity="0.35"><title>{escape(label)}</title></rect>')
        out.append(f'<text x="{x0 + 2:.1f}" y="{lanes_top + LANE_H - 4}" font-size="10">{escape(f["kind"])}</text>')
    for i, lane in enumerate(lanes):
        y = lanes_top + i * LANE_H
        out.append(f'<text x="4" y="{y + LANE_H - 4}" font-size="11">{escape(lane)}</text>')
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for t in sorted(transitions, key=lambda t: t["t_ms"]):
        by_worker.setdefault(str(t["worker"]), []).append(t)
    for i, (w, ts) in enumerate(sorted(by_worker.items())):
        y = lanes_top + (i + 1) * LANE_H
        for j, t in enumerate(ts):
            x0 = _x(t["t_ms"], span)
            x1 = _x(ts[j + 1]["t_ms"], span) if j + 1 < len(ts) else _x(span, span)
            color = STATE_COLORS.get(str(t["to"]), "#999")
            out.append(f'<rect class="state-seg" x="{x0:.1f}" y="{y + 2}" width="{max(1.0, x1 - x0):.1f}" '
                       f'height="{LANE_H - 4}" fill="{color}"><title>{escape(str(t["from"]))} -&gt; '
                       f'{escape(str(t["to"]))} at {t["t_ms"]:.1f} ms</title></rect>')
    if latencies:
        out.append(_latency_plot(latencies, workers, span, lanes_top + LANE_H * len(lanes) + 10, plot_h))
    axis_y = height - 22
    out.append(f'<line class="x-axis" x1="{PAD_L}" y1="{axis_y - 12}" x2="{WIDTH - 10}" y2="{axis_y - 12}" stroke="#999"/>')
    for k in range(6):
        t = span * k / 5
        anchor = "end" if k == 5 else "start"
        out.append(f'<text x="{_x(t, span):.1f}" y="{axis_y}" font-size="10" text-anchor="{anchor}">{t:.0f}</text>')
    out.append(f'<text class="axis-label" x="{(PAD_L + WIDTH) / 2:.0f}" y="{height - 6}" font-size="11" '
               f'text-anchor="middle">time since the first recorded event (ms)</text>')
    out.append("</svg>")
    return "".join(out)


def _legend(transitions: list[dict[str, Any]], faults: list[dict[str, Any]], latencies: list[dict[str, Any]]) -> str:
    """Swatches for what the chart draws: the breaker states present, fault windows, latency dots."""
    items: list[tuple[str, str, str]] = []  # (shape, color, label)
    for state in [s for s in STATE_COLORS if s in {str(t["to"]) for t in transitions}]:
        items.append(("rect", STATE_COLORS[state], f"state {state.replace('_', '-')}"))
    if faults:
        items.append(("rect", FAULT_COLOR, "fault window"))
    if latencies:
        items.append(("dot", "#1f77b4", "call latency (one colour per worker)"))
        items.append(("dot", "#d23b3b", "failed call"))
    out, x = ['<g class="legend">'], PAD_L
    for shape, color, label in items:
        if shape == "rect":
            out.append(f'<rect x="{x}" y="6" width="12" height="10" fill="{color}"/>')
        else:
            out.append(f'<circle cx="{x + 6}" cy="11" r="4" fill="{color}"/>')
        out.append(f'<text x="{x + 16}" y="15" font-size="11">{escape(label)}</text>')
        x += 22 + 6 * len(label)
    out.append("</g>")
    return "".join(out)


def _latency_plot(latencies: list[dict[str, Any]], workers: list[str], span: float, top: float, plot_h: int) -> str:
    """Latency dots over time with a labelled y axis in ms."""
    max_ms = max(p["ms"] for p in latencies) or 1.0
    bottom = top + plot_h - 6
    out = [f'<line class="y-axis" x1="{PAD_L - 4}" y1="{top + 6}" x2="{PAD_L - 4}" y2="{bottom}" stroke="#999"/>',
           f'<text class="axis-label" x="4" y="{top + plot_h / 2:.0f}" font-size="11">latency (ms)</text>']
    for frac in (0.0, 0.5, 1.0):
        y = bottom - (plot_h - 12) * frac
        out.append(f'<text x="{PAD_L - 8}" y="{y + 3:.1f}" font-size="10" text-anchor="end">{max_ms * frac:.0f}</text>')
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"]
    for p in latencies[:3000]:
        x = _x(p["t_ms"], span)
        y = bottom - (plot_h - 12) * p["ms"] / max_ms
        color = palette[workers.index(str(p["worker"])) % len(palette)] if p.get("ok", True) else "#d23b3b"
        out.append(f'<circle class="lat" cx="{x:.1f}" cy="{y:.1f}" r="1.6" fill="{color}"/>')
    return "".join(out)


def _checks(test: dict[str, Any]) -> str:
    if not test["checks"]:
        return ""
    rows = []
    for c in test["checks"]:
        enforced = "" if c.get("enforced", True) else " (measured)"
        rows.append(f'<tr class="check"><td>{escape(c["name"])}</td><td>{_badge(c["verdict"])}{enforced}</td>'
                    f'<td>{escape(c.get("detail") or "")}</td></tr>')
    out = ['<table class="checks"><tr><th>check</th><th>verdict</th><th>detail</th></tr>', *rows, "</table>"]
    for c in test["checks"]:
        if c.get("counterexample") is not None and c.get("verdict") in ("violated", "illegal", "unknown"):
            text = json.dumps(c["counterexample"], indent=2, sort_keys=True, default=str)
            out.append(f'<h4>Counterexample: {escape(c["name"])}</h4>{_counterexample(c["counterexample"])}'
                       f'<details><summary>raw counterexample (JSON)</summary><pre class="counterexample">'
                       f'{escape(text)}</pre></details>')
    return "".join(out)


def _counterexample(cx: Any) -> str:
    """The counterexample in words where its shape is known (a checker's: the first operation that
    could not be placed, the states tried, the minimal window); else nothing beyond the raw JSON."""
    if not isinstance(cx, dict):
        return ""
    items = []
    first = cx.get("first_unplaceable")
    if isinstance(first, dict):
        items.append(f"First operation that no order can place: <b>{escape(str(first.get('describe')))}</b> "
                     f"(process {escape(str(first.get('process')))}, event {escape(str(first.get('index')))}), "
                     f"with the state at {escape(str(first.get('state')))}")
    for a in (cx.get("attempts") or [])[:5]:
        if isinstance(a, dict) and a.get("explain"):
            items.append(f"tried: {escape(str(a['explain']))}")
    prefix = cx.get("longest_prefix") or []
    if prefix:
        items.append(f"longest order that worked: {len(prefix)} operations, ending with "
                     f"{escape(str(prefix[-1].get('describe')))} (state {escape(str(prefix[-1].get('state_after')))})")
    window = cx.get("minimal_window")
    if isinstance(window, dict) and window.get("cut_ns") is not None:
        items.append(f"the history is already illegal up to {float(window['cut_ns']) / 1e6:.3f} ms "
                     f"({len(window.get('ops') or [])} operations)")
    if cx.get("incomplete"):
        items.append(f"counterexample search cut short: {escape(str(cx['incomplete']))}")
    if not items:
        return ""
    return '<ul class="counterexample-words">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _recoveries(test: dict[str, Any]) -> str:
    rec = test.get("recoveries") or {}
    if not rec:
        return ""
    rows = "".join(f'<tr><td>{escape(k)}</td><td>{"never" if v is None else f"{v:.3f} s"}</td></tr>'
                   for k, v in rec.items())
    return f'<table class="recoveries"><tr><th>recovery event</th><th>time after the fault</th></tr>{rows}</table>'


def _audit(test: dict[str, Any]) -> str:
    """Faults requested / applied / failed, operations observed, and why the verdict is an error."""
    a = test.get("audit") or {}
    ops = a.get("ops_observed")
    out = [f'<p class="audit">faults requested {a.get("faults_requested", 0)}, applied {a.get("faults_applied", 0)}, '
           f'failed {a.get("faults_failed", 0)} · ops observed {"n/a" if ops is None else ops}</p>']
    reasons = test.get("verdict_reasons") or []
    if reasons:
        out.append('<ul class="verdict-reasons">' + "".join(f"<li>{escape(r)}</li>" for r in reasons) + "</ul>")
    if test.get("artifacts_error"):
        out.append(f'<p class="error-text">{escape(test["artifacts_error"])}</p>')
    return "".join(out)


def _links(test: dict[str, Any], base: Path | None) -> str:
    art = test.get("artifacts")
    if not art:
        return ""
    links = []
    for name in ("timeline.html", "history.jsonl", "faults.jsonl", "results.json"):
        p = Path(art) / name
        if p.exists():
            href = os.path.relpath(p, base) if base else str(p)
            links.append(f'<a href="{escape(href)}">{escape(name)}</a>')
    return ('<p class="meta">history views: ' + " · ".join(links) + "</p>") if links else ""


def render_html(report: dict[str, Any], base: Path | None = None) -> str:
    s = report["summary"]
    summary_rows = "".join(f'<tr><th>{escape(k.replace("_", " "))}</th><td id="summary-{escape(k)}">{v}</td></tr>'
                           for k, v in s.items())
    index_rows = []
    sections = []
    for i, t in enumerate(report["tests"]):
        anchor = f"t{i}"
        failed = t["outcome"] in ("failed", "error") or t["verdict"] in ("violated", "error")
        a = t.get("audit") or {}
        ops = a.get("ops_observed")
        index_rows.append(f'<tr class="row-{escape(t["outcome"])}"><td><a href="#{anchor}">{escape(t["nodeid"])}</a></td>'
                          f'<td>{escape(str(t.get("target") or ""))}</td><td>{_badge(t["outcome"])}</td>'
                          f'<td class="verdict">{_badge(t["verdict"])}</td>'
                          f'<td class="faults">{a.get("faults_applied", 0)}/{a.get("faults_requested", 0)}</td>'
                          f'<td class="ops">{"-" if ops is None else ops}</td><td>{len(t["checks"])}</td>'
                          f'<td>{t["duration_s"]:.2f}s</td></tr>')
        meta = [f"seed {t.get('seed')}" if t.get("seed") is not None else "", f"worker {t.get('worker')}",
                f"{t.get('history_ops', 0)} ops" if t.get("history_ops") else ""]
        body = [f'<section class="test{" is-failed" if failed else ""}" id="{anchor}">',
                f'<h3>{escape(t["nodeid"])} {_badge(t["outcome"])} {_badge(t["verdict"])}</h3>',
                f'<p class="meta">{escape(" · ".join(m for m in meta if m))}</p>']
        if t.get("headline"):
            body.insert(2, f'<p class="headline">{escape(t["headline"])}</p>')
        if t.get("description"):
            body.append(f"<p>{escape(t['description'])}</p>")
        if t.get("skip_reason"):
            body.append(f'<p class="meta">skipped: {escape(t["skip_reason"])}</p>')
        if t.get("error"):
            body.append(f'<p class="error-text">error: {escape(t["error"])}</p>')
        body.append(_audit(t))
        body.append(_timeline(t))
        body.append(render_lane(t))
        body.append(_checks(t))
        body.append(_recoveries(t))
        body.append(_links(t, base))
        if failed and t.get("longrepr"):
            open_attr = "" if t["checks"] else " open"
            body.append(f'<details class="longrepr"{open_attr}><summary>test output</summary>'
                        f'<pre class="counterexample">{escape(t["longrepr"])}</pre></details>')
        body.append("</section>")
        sections.append("".join(body))
    probes = "".join(f'<tr><td>{escape(str(p["id"]))}</td><td>{escape(str(p["value"]))} {escape(str(p.get("unit", "")))}</td>'
                     f'<td>{escape(str(p.get("note", "")))}</td><td>{escape(str(p.get("nodeid", "")))}</td></tr>'
                     for p in report.get("probes", []))
    backends = ", ".join(f"{k}: {v.get('name')} {v.get('version', '')}" for k, v in report.get("backends", {}).items()
                         if isinstance(v, dict))
    data = json.dumps(report, sort_keys=True, default=str).replace("<", "\\u003c")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cbchaos report</title><style>{CSS}</style></head>
<body>
<h1>cbchaos report {_badge('failed' if s['failed'] or s['error'] or s.get("verdict_errors") else 'passed')}</h1>
<p class="meta">generated {escape(str(report['generated_at']))} · seed {escape(str(report['seed']))} ·
exit status {escape(str(report.get('exitstatus')))} · {escape(backends)}{_load(report)}<br>command: <code>{escape(report.get('command', ''))}</code></p>
<h2>Summary</h2><table id="summary">{summary_rows}</table>
<h2>Tests and scenarios</h2>
<div id="controls"><label><input type="checkbox" id="only-failed"> failures only</label></div>
<table id="index"><tr><th>test</th><th>target</th><th>outcome</th><th>verdict</th><th>faults applied/requested</th><th>ops</th><th>checks</th><th>time</th></tr>
{''.join(index_rows)}</table>
{('<h2>Weakness probes</h2><table id="probes"><tr><th>id</th><th>value</th><th>note</th><th>test</th></tr>' + probes + '</table>') if probes else ''}
<h2>Details</h2>
{''.join(sections)}
<script type="application/json" id="cbchaos-data">{data}</script>
<script>{JS}</script>
</body></html>
"""


def _load(report: dict[str, Any]) -> str:
    """The header's background-load note (absent when the run had none)."""
    load = report.get("background_load") or {}
    if not load.get("workers"):
        return ""
    return (f' · <span id="background-load">background load {int(load["workers"])} busy processes, '
            f'{float(load.get("cpu_s") or 0):.1f} CPU s</span>')


def write_html(report: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.html"
    path.write_text(render_html(report, base=directory.resolve()), encoding="utf-8")
    return path
