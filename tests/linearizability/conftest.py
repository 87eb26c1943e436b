from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "jepsen-etcd"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "verdicts.tsv").exists():
        pytest.skip(f"conformance corpus not found at {CORPUS}")
    return CORPUS
