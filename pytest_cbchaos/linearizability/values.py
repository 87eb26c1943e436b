"""Value normalisation for the built-in models (docs/linearizability.md "Values").

Redis stores strings: ``SET k 3`` then ``GET k`` replies ``b"3"``, and a JSON-lines history
stores that reply as ``"3"``. The register, cas-register, kv, counter and set models therefore
compare *scalars* (``str``, ``bytes``, ``int``, ``float``) by their Redis string form: bytes are
decoded as UTF-8, an int is its decimal text, a float its ``repr``. Values of any other type
(lists, dicts, bools, ...) are compared with ``==``. A register whose values mix a scalar with
another type cannot be compared meaningfully: :func:`check_kinds` raises
:class:`ValueTypeMismatch` (an input error) instead of letting the search report ILLEGAL.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable

from ..history.ops import MalformedHistory, Op

_INT_TEXT = re.compile(r"^[+-]?\d+$")


class ValueTypeMismatch(MalformedHistory):
    """Values of one register/key/counter/set cannot be compared (names both ops)."""


_SCALARS = frozenset({str, bytes, int, float})


def is_scalar(v: Any) -> bool:
    return isinstance(v, (str, bytes, int, float)) and not isinstance(v, bool)


def canonical(v: Any) -> Any:
    """Redis string form of a scalar (bytes decoded as UTF-8 when they decode); others unchanged."""
    if isinstance(v, bool) or not is_scalar(v):
        return v
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return v
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else v
    return str(v)


#: built-in types whose unequal values never share a Redis string form with a value of the same type
EXACT_TYPES = frozenset({str, bytes, int, float, bool, type(None), tuple, list, dict})


def same_value(a: Any, b: Any) -> bool:
    """``a == b``, or both scalars with the same Redis string form (``b"3"`` matches ``3``)."""
    if a == b:
        return True
    t = type(a)
    if t is type(b) and t in EXACT_TYPES:  # the common case, decided without normalising
        return False
    if is_scalar(a) and is_scalar(b):
        return canonical(a) == canonical(b)
    return False


def as_int(v: Any) -> Any:
    """A counter value: int, or the int a decimal string/bytes spells; anything else unchanged."""
    if isinstance(v, bytes):
        try:
            v = v.decode("utf-8")
        except UnicodeDecodeError:
            return v
    if isinstance(v, str) and _INT_TEXT.match(v.strip()):
        return int(v.strip())
    return v


def is_error_reply(v: Any) -> bool:
    """The classifier's output for a Redis error reply (``{"error": ...}``): not a value."""
    return isinstance(v, dict) and set(v) == {"error"}


def kind(v: Any) -> str | None:
    """``None`` for nil, ``"scalar"`` for str/bytes/int/float, else the type name."""
    if v is None:
        return None
    if type(v) in _SCALARS or is_scalar(v):
        return "scalar"
    if isinstance(v, (list, tuple)):
        return "list"
    return type(v).__name__


def _where(op: Op) -> str:
    key = f" key {op.key!r}" if op.key is not None else ""
    return f"event index {op.invoke_index} (process {op.process}, {op.f}{key})"


def check_kinds(values: Iterable[tuple[Op, str, Any]], what: str) -> None:
    """Raise :class:`ValueTypeMismatch` if ``(op, role, value)`` mix a scalar with another type."""
    first: dict[str, tuple[Op, str, Any]] = {}
    for op, role, v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueTypeMismatch(f"{what}: {role} {v!r} at {_where(op)}; expected a finite "
                                    "number (NaN never equals itself)")
        k = kind(v)
        if k is None or k in first:
            continue
        first[k] = (op, role, v)
        if len(first) > 1:
            (o1, r1, v1), (o2, r2, v2) = first.values()
            raise ValueTypeMismatch(
                f"{what}: cannot compare {r1} {v1!r} ({type(v1).__name__}) at {_where(o1)} with "
                f"{r2} {v2!r} ({type(v2).__name__}) at {_where(o2)}; expected values of one kind: "
                "scalars (str, bytes, int, float; compared as Redis strings) or one other type "
                "(see docs/linearizability.md, Values)")
