"""Deprecated names of renamed settings: the one place that still accepts them (docs/breaker.md#names).

The breaker's failure threshold is ``failure_threshold`` and its cooldown ``cooldown_s`` everywhere
(``BreakerConfig``, ``AdapterConfig``, scenario ``workload.params``). Old names keep working with a
``DeprecationWarning`` naming the new one. No dependencies, so every layer may use it.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, TypeVar

#: Per owner: deprecated name -> canonical name.
RENAMED: dict[str, dict[str, str]] = {
    "BreakerConfig": {"max_failures": "failure_threshold", "reset_time_seconds": "cooldown_s"},
    "AdapterConfig": {"open_seconds": "cooldown_s"},
    "workload.params": {"threshold": "failure_threshold", "recovery_s": "cooldown_s", "reset_s": "cooldown_s"},
}

C = TypeVar("C", bound=type)


def accepts_renamed(cls: C) -> C:
    """Let ``cls(old=...)`` and ``obj.old`` work for the names ``RENAMED[cls.__name__]`` lists, with a warning."""
    renamed = RENAMED[cls.__name__]
    init: Callable[..., None] = cls.__init__  # type: ignore[misc]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kw: Any) -> None:
        for old, new in renamed.items():
            if old in kw:
                if new in kw:
                    raise TypeError(f"{cls.__name__}: got both {old} and {new}; {old} is the deprecated name of {new}")
                warnings.warn(f"{cls.__name__}({old}=...) is deprecated, use {new}", DeprecationWarning, stacklevel=2)
                kw[new] = kw.pop(old)
        init(self, *args, **kw)

    cls.__init__ = __init__  # type: ignore[misc]
    for old, new in renamed.items():
        setattr(cls, old, property(functools.partial(_read_renamed, cls.__name__, old, new),
                                   doc=f"Deprecated name of ``{new}``."))
    return cls


def _read_renamed(owner: str, old: str, new: str, obj: Any) -> Any:
    warnings.warn(f"{owner}.{old} is deprecated, use {new}", DeprecationWarning, stacklevel=3)
    return getattr(obj, new)


def rename_params(given: dict[str, Any], declared: Any, where: Callable[[str], str]) -> tuple[dict[str, Any], str | None]:
    """``given`` with deprecated scenario keys replaced by their canonical names (only where ``declared``
    has the canonical name). Warns ``FILE:LINE: KEY is deprecated, use NEW`` (``where(key)`` gives
    ``FILE:LINE: dotted.key``). Returns ``(params, clash)``; ``clash`` names a key given under both names."""
    out = dict(given)
    for old, new in RENAMED["workload.params"].items():
        if old in given and old not in declared and new in declared:
            if new in out:
                return out, old
            warnings.warn(f"{where(old)} is deprecated, use {new}", DeprecationWarning, stacklevel=3)
            out[new] = out.pop(old)
    return out, None
