from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "jepsen-etcd"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "verdicts.tsv").exists():
        pytest.skip(f"conformance corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def counterexample_deadlines(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """Freeze the checker's clock at 100.0 and record the deadline each counterexample gets, so
    a check with ``timeout=S`` must hand it exactly ``100.0 + S``; the command line's clock is
    frozen too (reading a file takes none of ``--timeout S``)."""
    from pytest_cbchaos.linearizability import checker
    from pytest_cbchaos.linearizability import cli

    class FrozenClock:
        monotonic = staticmethod(lambda: 100.0)
        perf_counter = staticmethod(lambda: 0.0)

    seen: list[float | None] = []
    real = checker._add_counterexample
    monkeypatch.setattr(checker, "time", FrozenClock)
    monkeypatch.setattr(cli, "clock", lambda: 0.0)
    monkeypatch.setattr(checker, "_add_counterexample",
                        lambda *a, deadline, **kw: (seen.append(deadline), real(*a, deadline=deadline, **kw)))
    return seen
