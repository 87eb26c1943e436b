"""Event rows for hand-written histories. A module of its own, not conftest: ``from conftest
import`` resolves to whichever conftest pytest imported last (tests/stream's when both
directories are given on one command line)."""

from __future__ import annotations

from typing import Any


def ev(rows: list[tuple]) -> list[dict[str, Any]]:
    """Rows ``(time, process, type, f, value[, key])`` -> events with index = position."""
    out = []
    for i, row in enumerate(rows):
        t, p, typ, f, v = row[:5]
        e = {"time": t, "process": p, "type": typ, "f": f, "value": v, "index": i}
        if len(row) > 5:
            e["key"] = row[5]
        out.append(e)
    return out
