"""purgatory 3.0.1 (async and sync unit of work) under the probes, and the crash verdict.

The probes need ``purgatory[redis]`` with ``redis<6``: ``nox -s purgatory`` runs this module in its own
environment (docs/adapters.md#purgatory); in the kit's environment those tests skip with the reason.
"""

from __future__ import annotations

import json

import pytest

from pytest_cbchaos.adapters import PurgatoryAdapter, PurgatorySyncAdapter
from pytest_cbchaos.adapters import matrix
from pytest_cbchaos.adapters.base import BreakerAdapter

PURGATORY = (PurgatoryAdapter, PurgatorySyncAdapter)
needs_purgatory = pytest.mark.skipif(PurgatoryAdapter.unavailable_reason() is not None,
                                     reason=str(PurgatoryAdapter.unavailable_reason()))


class _JsonAdapter(BreakerAdapter):
    name, import_name = "json-target", "json"


def test_a_crash_inside_the_target_is_its_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(matrix.PROBES, "crash-probe", lambda ctx, cls: json.loads("{"))
    [r] = matrix.run_matrix(None, [_JsonAdapter], probes=["crash-probe"])  # type: ignore[arg-type]
    assert r.weak and r.detail["verdict"] == "target raised JSONDecodeError"
    assert "target raised JSONDecodeError" in matrix.format_markdown([r])


def test_a_crash_in_the_kit_is_not_dressed_up_as_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def kit_bug(ctx, cls):
        raise ValueError("kit bug")
    monkeypatch.setitem(matrix.PROBES, "crash-probe", kit_bug)
    with pytest.raises(ValueError, match="kit bug"):
        matrix.run_matrix(None, [_JsonAdapter], probes=["crash-probe"])  # type: ignore[arg-type]


@needs_purgatory
def test_purgatory_probe_table(cbchaos_probe_context, capsys: pytest.CaptureFixture[str]) -> None:
    results = matrix.run_matrix(cbchaos_probe_context, PURGATORY)
    with capsys.disabled():
        print("\n" + matrix.format_markdown(results))
    by = {(r.adapter, r.id): r for r in results}
    assert all("verdict" not in r.detail for r in results if r.adapter == "purgatory"), \
        [(r.id, r.detail) for r in results if r.adapter == "purgatory"]
    sync = [r for r in results if r.adapter == "purgatory_sync" and r.measured is None and "verdict" in r.detail]
    assert sync, "the sync unit of work was expected to crash in 3.0.1"
    assert by[("purgatory", "W-HERD")].measured is not None
