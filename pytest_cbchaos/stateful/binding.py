"""Machine classes bound to an environment (the ``*_machine(env, ...)`` factories)."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T", bound=type)


def bind_machine(name: str, base: T, attrs: dict[str, Any]) -> T:
    """A subclass of ``base`` named ``name`` with ``attrs`` (environment, enabled rules, mutants).

    Hypothesis digests a machine class with ``inspect.getsource``. For a class, CPython 3.11's
    ``inspect`` parses the whole defining module with ``ast`` to look for it, and 3.11.7 sporadically
    raises ``SystemError: AST constructor recursion depth mismatch`` there (seen in CI). A generated
    class has no source of its own, so its ``__module__`` names no loaded module: the lookup fails
    at once with ``TypeError``, and Hypothesis digests the class name instead.
    """
    cls = type(name, (base,), attrs)
    cls.__module__ = f"{base.__module__}.<bound>"
    return cls  # type: ignore[return-value]
