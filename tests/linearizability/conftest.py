from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "jepsen-etcd"


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


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "verdicts.tsv").exists():
        pytest.skip(f"conformance corpus not found at {CORPUS}")
    return CORPUS
