"""One name per setting (docs/breaker.md#names): the old ones still work, warned, in one place."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_cbchaos.adapters import AdapterConfig
from pytest_cbchaos.breaker import BreakerConfig


def test_breaker_config_accepts_the_deprecated_names_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning) as caught:
        c = BreakerConfig(max_failures=2, reset_time_seconds=7)
    assert [str(w.message) for w in caught] == ["BreakerConfig(max_failures=...) is deprecated, use failure_threshold",
                                                "BreakerConfig(reset_time_seconds=...) is deprecated, use cooldown_s"]
    assert caught[0].filename == __file__  # the warning points at the caller
    assert c == BreakerConfig(failure_threshold=2, cooldown_s=7)
    with pytest.warns(DeprecationWarning, match=r"BreakerConfig.max_failures is deprecated, use failure_threshold"):
        assert c.max_failures == 2
    assert {f.name for f in dataclasses.fields(c)} >= {"failure_threshold", "cooldown_s"}
    assert not {"max_failures", "reset_time_seconds"} & {f.name for f in dataclasses.fields(c)}


def test_deprecated_names_are_still_validated() -> None:
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="BreakerConfig.cooldown_s"):
        BreakerConfig(reset_time_seconds=float("nan"))


def test_both_names_at_once_is_an_error() -> None:
    with pytest.raises(TypeError, match="both max_failures and failure_threshold"):
        BreakerConfig(max_failures=2, failure_threshold=3)


def test_adapter_config_accepts_open_seconds_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"AdapterConfig\(open_seconds=...\) is deprecated, use cooldown_s"):
        a = AdapterConfig(**{"failure_threshold": 2, "open_seconds": 5})
    assert a.cooldown_s == 5 and a.to_dict()["cooldown_s"] == 5 and "open_seconds" not in a.to_dict()


def test_new_names_raise_no_warning(recwarn: pytest.WarningsRecorder) -> None:
    BreakerConfig(failure_threshold=2, cooldown_s=7)
    AdapterConfig(failure_threshold=2, cooldown_s=7)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
