"""Typed parameter declarations: what a scenario target's ``workload.params`` and each fault kind's
``params`` accept (docs/scenarios.md, "Parameters"). No dependencies, so every layer may use it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

_TYPE_WORDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Param:
    """One parameter: its type (``float`` also takes integers), default, bounds and meaning.

    ``check`` (optional) returns what was expected when a well-typed value is still wrong, else None.
    """

    type: type
    default: Any = None
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    required: bool = False
    describe: str = ""  # the expected phrase, when the generic one says too little
    check: Callable[[Any], str | None] | None = None

    def expected(self) -> str:
        if self.describe:
            return self.describe
        words = _TYPE_WORDS.get(self.type, self.type.__name__)
        if self.minimum is not None and self.maximum is not None:
            words += f" between {self.minimum:g} and {self.maximum:g}"
        elif self.minimum is not None:
            words += f" >= {self.minimum:g}"
        elif self.maximum is not None:
            words += f" <= {self.maximum:g}"
        return words + (" or null" if self.nullable else "")

    def problem(self, value: Any) -> str | None:
        """What was expected, when ``value`` does not fit; None when it does."""
        if value is None:
            return None if self.nullable else self.expected()
        if self.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, self.type)
        if ok and self.minimum is not None and value < self.minimum:
            ok = False
        if ok and self.maximum is not None and value > self.maximum:
            ok = False
        if not ok:
            return self.expected()
        return self.check(value) if self.check is not None else None


Params = Mapping[str, Param]


def defaults(params: Params) -> dict[str, Any]:
    """``{name: default}`` of a declaration (what a run uses for keys the file leaves out)."""
    return {name: p.default for name, p in params.items()}


def allowed_keys(params: Params) -> str:
    """The expected-keys phrase of an unknown-key error."""
    return "params " + ", ".join(params) if params else "no params"
