"""Located scenario errors: every message names file, line, key, the bad value and what was expected."""

from __future__ import annotations

from typing import Any

_MISSING = object()


class ScenarioError(Exception):
    """A scenario file is malformed. ``str()`` is the complete, user-facing message (no traceback needed)."""

    def __init__(self, file: str, line: int | None, key: str, message: str, *,
                 value: Any = _MISSING, expected: str | None = None) -> None:
        self.file, self.line, self.key, self.message = str(file), line, key, message
        self.value = None if value is _MISSING else value
        self.has_value = value is not _MISSING
        self.expected = expected
        super().__init__(self.format())

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def format(self) -> str:
        parts = [f"{self.location}: {self.key or '<top level>'}: {self.message}"]
        if self.has_value:
            parts.append(f"got {self.value!r}")
        if self.expected:
            parts.append(f"expected {self.expected}")
        return "; ".join(parts)


class ScenarioErrors(Exception):
    """Several files failed to load (the CLI validates all before running)."""

    def __init__(self, errors: list[ScenarioError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.format() for e in errors))
