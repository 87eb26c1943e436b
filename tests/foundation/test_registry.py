"""Systems register with the core through the entry-point group ``pytest_cbchaos.systems``."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from pytest_cbchaos import registry
from pytest_cbchaos.linearizability import models
from pytest_cbchaos.scenario import targets

KIT = '''
from pytest_cbchaos.linearizability.models import register_model
from pytest_cbchaos.scenario.targets import register_target

def register():
    register_target("third-party", "tests_sample_targets_alias:CounterTarget")
    register_model("third-party-model", "pytest_cbchaos.linearizability.models:CounterModel")
'''


def test_an_entry_point_registers_a_target_and_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_kit.py").write_text(KIT)
    (tmp_path / "tests_sample_targets_alias.py").write_text(
        (Path(__file__).resolve().parents[1] / "scenario" / "sample_targets.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="mykit", value="my_kit:register", group=registry.GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == registry.GROUP else [])
    monkeypatch.setattr(targets, "_TARGETS", registry.Registry())  # unmarked tables: filled on first use
    monkeypatch.setattr(models, "_REGISTRY", registry.Registry(models._REGISTRY))
    try:
        assert {"breaker-store", "third-party"} <= set(targets.target_names())  # ours and theirs
        assert targets.resolve_target("third-party").name == "counter"
        assert type(models.get_model("third-party-model")).__name__ == "CounterModel"
    finally:
        sys.modules.pop("my_kit", None)
        sys.modules.pop("tests_sample_targets_alias", None)


def test_an_unregistered_name_is_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(targets.TargetNotFound) as info:
        targets.resolve_target("no-such-system")
    assert "breaker-store" in info.value.expected


def test_a_table_module_imported_afresh_is_filled_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-process pytest run drops the modules it imported first; the registry module may outlive the
    tables. A fresh, empty table is filled again on first use (it was 'already loaded' before)."""
    models.get_model("breaker-store")  # the systems have registered into the current table
    monkeypatch.setattr(models, "_REGISTRY", registry.Registry(
        {k: v for k, v in models._REGISTRY.items() if k != "breaker-store"}))
    assert type(models.get_model("breaker-store")).__name__ == "BreakerStoreModel"
