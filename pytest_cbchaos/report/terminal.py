"""The "cbchaos" terminal summary section (rich table rendered to text)."""

from __future__ import annotations

import io
from typing import Any

from pytest_cbchaos.report.topology import terminal_lines


def is_interesting(test: dict[str, Any]) -> bool:
    """Rows worth a line: anything with checks, faults (applied or failed), a scenario or a verdict error."""
    return bool(test["checks"] or test["faults"] or test.get("kind") == "scenario" or test.get("topology")
                or (test.get("audit") or {}).get("faults_requested") or test["verdict"] == "error")


def note(test: dict[str, Any]) -> str:
    """Why the verdict is what it is: the entry's headline (report/explain.py) when something went
    wrong, else the verdict's reasons, the violated checks, or the skip reason."""
    if test.get("headline"):
        return test["headline"]
    bad = [f"{c['name']} {c.get('verdict')}" for c in test["checks"]
           if c.get("verdict") in ("violated", "illegal", "unknown")]
    parts = list(test.get("verdict_reasons") or [])
    if bad:
        parts.insert(0, ", ".join(bad))
    if not parts and test.get("skip_reason"):
        parts.append(test["skip_reason"])
    return "; ".join(parts)


def render_summary(report: dict[str, Any], paths: list[str], width: int = 120) -> str:
    from rich.console import Console
    from rich.table import Table

    s = report["summary"]
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None)
    console.print(f"cbchaos: {s['tests']} tests ({s['scenarios']} scenarios), faults requested "
                  f"{s['faults_requested']}, applied {s['faults_injected']}, failed {s['faults_failed']}, "
                  f"checks run {s['checks_run']}, violations {s['violations']}, unknown {s['unknown']}, "
                  f"verdict errors {s['verdict_errors']}, seed {report.get('seed')}", soft_wrap=True)
    load = report.get("background_load") or {}
    if load.get("workers"):
        console.print(f"cbchaos: background load {load['workers']} busy processes, "
                      f"{load.get('cpu_s', 0):.1f} CPU s burned", soft_wrap=True)
    interesting = [t for t in report["tests"] if is_interesting(t)]
    if interesting:
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("test", overflow="fold", ratio=3)
        for col in ("outcome", "verdict", "faults", "ops", "checks"):
            table.add_column(col, no_wrap=True)
        table.add_column("note", overflow="fold", ratio=1)
        for t in interesting[:60]:
            a = t.get("audit") or {}
            ops = a.get("ops_observed")
            table.add_row(t["nodeid"], t["outcome"], t["verdict"],
                          f"{a.get('faults_applied', 0)}/{a.get('faults_requested', 0)}",
                          "-" if ops is None else str(ops), str(len(t["checks"])), note(t)[:240])
        console.print(table)
    for t in interesting[:60]:
        for line in terminal_lines(t):
            console.print(line)
    for p in report.get("probes", [])[:30]:
        console.print(f"probe {p['id']}: {p['value']} {p.get('unit', '')} {p.get('note', '')}".rstrip())
    for path in paths:
        console.print(f"report: {path}")
    return buf.getvalue()
