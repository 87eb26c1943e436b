"""Survey mode of the store machine and the bug-class messages (docs/stateful.md#survey-mode)."""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings

from pytest_cbchaos.breaker.conformance.classify import CLASSES, Deviation, classify
from pytest_cbchaos.stateful import store_machine
from pytest_cbchaos.stateful.survey import StoreDeviation, SurveyFailed, check_store, run_survey
from pytest_cbchaos.testing.breaker_mutants import AnySuccessClosesStore, UnfencedReleaseStore

DET = settings(max_examples=15, derandomize=True, database=None, deadline=None)


class TwoBugStore(AnySuccessClosesStore, UnfencedReleaseStore):
    """Two independent defects: any success closes HALF_OPEN; release ignores the token."""


def test_survey_reports_both_classes_with_minimal_examples() -> None:
    rep = run_survey(store_machine(TwoBugStore, name="TwoBug"), settings=DET)
    assert set(rep.classes) == {"non-owner-closed", "non-owner-resolved-probe"}, rep.format()
    for f in rep.findings:
        assert 1 <= len(f.example) <= 4, f.format()
    assert "a non-owner's success closed HALF_OPEN" in rep.format() and "minimal example" in rep.format()


def test_fail_fast_is_the_default_and_survey_raises_once_with_all() -> None:
    machine = store_machine(TwoBugStore, name="TwoBugFF")
    with pytest.raises(StoreDeviation):
        check_store(machine, settings=settings(DET, phases=[Phase.generate]))  # the cell walk finds it first
    with pytest.raises(SurveyFailed) as info:
        check_store(machine, survey=True, settings=DET)
    assert len(info.value.report.findings) >= 2


def test_a_correct_store_has_no_finding() -> None:
    from pytest_cbchaos.breaker.store import InMemoryStore

    assert run_survey(store_machine(InMemoryStore, name="Good"), settings=DET).findings == []


HALF = {"state": "half_open", "half_open_probe_active": True, "open_until": 10.0}


@pytest.mark.parametrize("dev, klass", [
    (Deviation("gate", {}, HALF, {"won": False}, {"won": True}), "second-probe-owner"),
    (Deviation("gate", {}, {"state": "open", "open_until": 10.0}, {"won": False}, {"won": True}), "admitted-in-open"),
    (Deviation("gate", {}, HALF, {"won": True}, {"won": False}), "abandoned-probe-wedge"),
    (Deviation("force_open", {}, {"state": "open", "open_until": 10.0}, {"applied": False}, {"applied": True},
               {"state": "open", "open_until": 10.0}, {"state": "open", "open_until": 5.0}), "open-window-shortened"),
    (Deviation("record_success", {}, HALF, {"applied": False, "new_state": "half_open"},
               {"applied": True, "new_state": "closed"}), "non-owner-closed"),
    (Deviation("release_probe", {}, HALF, {"applied": False, "new_state": "half_open"},
               {"applied": True, "new_state": "open"}, owner=False), "non-owner-resolved-probe"),
    (Deviation("renew_probe", {}, HALF, {"renewed": False}, {"renewed": True}, owner=False),
     "non-owner-resolved-probe"),
    (Deviation("release_probe", {}, HALF, {"applied": True}, {"applied": False}, owner=True), "owner-refused"),
    (Deviation("record_failure", {}, {"state": "closed"}, {}, {}, {"failure_count": 2}, {"failure_count": 1}),
     "failure-lost"),
    (Deviation("record_failure", {}, {"state": "open", "open_until": 5.0}, {}, {}, {"open_until": 9.0},
               {"open_until": 5.0}), "cooldown-not-extended"),
    (Deviation("force_open", {}, {"state": "open"}, {"applied": False, "new_state": "open", "prev_state": "open"},
               {"applied": True, "new_state": "open", "prev_state": "open"}), "noop-wrote"),
    (Deviation("reset", {}, {"state": "open"}, {"applied": True, "new_state": "closed", "prev_state": "open"},
               {"applied": False, "new_state": "closed", "prev_state": "open"}), "write-not-reported"),
    (Deviation("reset", {}, {"state": "open"}, {"new_state": "closed"}, {"new_state": "open"}), "wrong-transition"),
    (Deviation("reset", {}, {"state": "closed"}, {"prev_state": "closed"}, {"prev_state": "open"}), "reset-not-atomic"),
    (Deviation("get_state", {}, {"state": "open"}, {}, {}, {"open_until": 1.0}, {"open_until": 2.0}), "record-differs"),
    (Deviation("reset", {}, {"state": "open"}, {}, {}, {"recent_ops": "a"}, {"recent_ops": ""}), "op-not-recorded"),
])
def test_classifier_names_the_class(dev: Deviation, klass: str) -> None:
    assert classify(dev) is CLASSES[klass]
