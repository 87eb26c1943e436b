"""Bound machine classes have no source to look up: Hypothesis digests them by name, so CPython
3.11's ``inspect`` never parses their module with ``ast`` (which can raise ``SystemError: AST
constructor recursion depth mismatch`` on 3.11.7)."""

from __future__ import annotations

import inspect

import pytest
from hypothesis.internal.reflection import function_digest
from hypothesis.stateful import RuleBasedStateMachine, rule

from pytest_cbchaos.stateful.binding import bind_machine


class _Base(RuleBasedStateMachine):
    env: object = None

    @rule()
    def step(self) -> None:
        assert self.env == "bound"


def test_bound_class_skips_source_lookup_and_keeps_its_name_and_attributes() -> None:
    m = bind_machine("Bound", _Base, {"env": "bound"})
    with pytest.raises(TypeError):
        inspect.getsource(m)
    assert m.__name__ == "Bound" and issubclass(m, _Base) and m.env == "bound"
    assert function_digest(m) != function_digest(bind_machine("Other", _Base, {"env": "bound"}))
    m().step()
