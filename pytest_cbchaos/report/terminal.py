"""The "cbchaos" terminal summary section (rich table rendered to text)."""

from __future__ import annotations

import io
from typing import Any


def render_summary(report: dict[str, Any], paths: list[str], width: int = 120) -> str:
    from rich.console import Console
    from rich.table import Table

    s = report["summary"]
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None)
    console.print(f"cbchaos: {s['tests']} tests ({s['scenarios']} scenarios), faults injected {s['faults_injected']}, "
                  f"checks run {s['checks_run']}, violations {s['violations']}, unknown {s['unknown']}, "
                  f"seed {report.get('seed')}")
    interesting = [t for t in report["tests"] if t["checks"] or t["faults"] or t.get("kind") == "scenario"]
    if interesting:
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("test", overflow="fold", ratio=3)
        for col in ("outcome", "verdict", "faults", "checks"):
            table.add_column(col, no_wrap=True)
        table.add_column("note", overflow="fold", ratio=1)
        for t in interesting[:60]:
            bad = [c["name"] for c in t["checks"] if c.get("verdict") in ("violated", "illegal", "unknown")]
            note = ("violated: " + ", ".join(bad)) if bad else (t.get("skip_reason") or "")
            table.add_row(t["nodeid"], t["outcome"], t["verdict"], str(len(t["faults"])), str(len(t["checks"])),
                          note[:120])
        console.print(table)
    for p in report.get("probes", [])[:30]:
        console.print(f"probe {p['id']}: {p['value']} {p.get('unit', '')} {p.get('note', '')}".rstrip())
    for path in paths:
        console.print(f"report: {path}")
    return buf.getvalue()
