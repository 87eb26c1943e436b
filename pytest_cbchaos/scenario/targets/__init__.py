"""Registry of scenario targets: a name -> ``"module:attr"`` of a :class:`Target`.

Systems register their targets (:func:`register_target`, from a ``register()`` listed under the
entry-point group ``pytest_cbchaos.systems``; see :mod:`pytest_cbchaos.registry`), and import
their system lazily, so a target whose dependency is missing *skips with a reason* instead of
breaking collection. A scenario may also name ``target: "mypkg.mymodule:MyTarget"`` (a
:class:`Target` subclass or instance; the scenario file's directory is importable).

The target types live in :mod:`pytest_cbchaos.scenario.target`; they are re-exported here.
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

from pytest_cbchaos.registry import Registry, load_systems
from pytest_cbchaos.scenario.target import (  # noqa: F401 (re-exported: the public place users import from)
    CheckResult, Observations, Target, TargetUnavailable, import_object,
)

_TARGETS: Registry = Registry()
_lock = threading.Lock()


def register_target(name: str, spec: str) -> None:
    """Make ``target: NAME`` mean ``spec`` (``"package.module:attr"``, imported when a scenario uses it)."""
    if ":" not in spec:
        raise ValueError(f"register_target({name!r}, {spec!r}): expected 'package.module:attr'")
    with _lock:
        _TARGETS[name] = spec


def target_names() -> list[str]:
    load_systems(_TARGETS)
    return list(_TARGETS)


class TargetNotFound(LookupError):
    def __init__(self, message: str, expected: str) -> None:
        super().__init__(message)
        self.expected = expected


def resolve_target(name: str, base: Path | None = None) -> Target:
    """A target by registered name or ``module:attr``; raises :class:`TargetNotFound`."""
    load_systems(_TARGETS)
    registered = name in _TARGETS
    spec = _TARGETS.get(name, name)
    expected = "one of " + ", ".join(_TARGETS) + " or 'package.module:attr'"
    if ":" not in spec:
        raise TargetNotFound("unknown target", expected)
    mod_name, _, attr = spec.partition(":")
    added = False
    if base is not None and str(base) not in sys.path and not registered:
        sys.path.insert(0, str(base))
        added = True
    try:
        module = importlib.import_module(mod_name)
        obj = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise TargetNotFound(f"cannot import target ({type(exc).__name__}: {exc})", expected) from None
    finally:
        if added:
            sys.path.remove(str(base))
    target = obj() if isinstance(obj, type) else obj
    if not isinstance(target, Target):
        raise TargetNotFound(f"{spec} is not a pytest_cbchaos.scenario.targets.Target", expected)
    return target
