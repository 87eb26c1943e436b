"""Where systems register with the core: scenario targets and checker models (docs/scenarios.md,
"Registering a system").

The core (``scenario/``, ``linearizability/``) names no system. A system kit registers itself
through a ``register()`` function listed under the entry-point group ``pytest_cbchaos.systems``;
the kit's own systems are registered by :func:`pytest_cbchaos.systems.register`. Registration
records ``"module:attr"`` strings, so nothing is imported until a scenario or check uses it.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points

GROUP = "pytest_cbchaos.systems"
OWN = "pytest_cbchaos.systems:register"  # this package's systems, also when its metadata is stale

_lock = threading.RLock()


class Registry(dict):
    """A name → ``"module:attr"`` (or factory) table systems fill; it knows whether they have filled it.

    The mark lives on the table, not in this module: a table module imported afresh (pytest's in-process
    test runs drop the modules they imported first) starts empty and unmarked, and is filled again."""

    loaded = False


def load_object(spec: str) -> object:
    """``"package.module:attr"`` imported (ImportError / AttributeError propagate)."""
    mod_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(mod_name), attr)


def load_systems(table: Registry) -> None:
    """Run every system's ``register()`` once for ``table`` (later calls do nothing)."""
    with _lock:  # held while registering: a concurrent first lookup waits for the full registry
        if table.loaded:  # also a register() that looks a name up (re-entrant: the lock is an RLock)
            return
        table.loaded = True
        specs = [OWN] + [ep.value for ep in entry_points(group=GROUP) if ep.value != OWN]
        for spec in specs:
            load_object(spec)()  # type: ignore[operator]
