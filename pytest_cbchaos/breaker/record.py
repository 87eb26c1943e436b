"""The breaker record: fields, canonical codec and the one corrupt-field policy (docs/breaker-design.md#the-record).

Policy: **repair to default, never raise**. A field that does not decode (strict UTF-8) or does not
match its grammar reads as its default and its name is reported in ``corrupt``; the next write
rewrites canonical values. The Lua prologue (``lua/prologue.lua``) implements the same grammars;
``CODEC_VECTORS`` is the shared table both are tested against.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

STATES = ("closed", "open", "half_open")
MAX_COUNT = 2**31 - 1
MAX_TIME = 1e11
RECENT_OPS_MAX = 16

FIELDS = ("state", "failure_count", "last_failure_time", "open_until", "half_open_probe_active",
          "probe_token", "probe_lease_until", "probe_anchor", "probe_generation", "recent_ops")
MASSGEN_FIELDS = ("state", "failure_count", "last_failure_time", "open_until", "half_open_probe_active")
FLOAT_FIELDS = ("last_failure_time", "open_until", "probe_lease_until", "probe_anchor")
INT_FIELDS = ("failure_count", "probe_generation")

_INT_RE = re.compile(r"0|[1-9][0-9]*")
_FLOAT_RE = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_TOKEN_RE = re.compile(r"[0-9]{1,15}:[0-9a-f]{32}")
_OPID_RE = re.compile(r"[0-9a-f]{32}")
_ENTRY_RE = re.compile(r"([0-9a-f]{32})=(closed|open|half_open)>(closed|open|half_open)")


@dataclass(frozen=True, slots=True)
class Record:
    """Decoded record; hashable and JSON-able through :meth:`to_dict`.

    ``recent_ops`` is a tuple of ``(op_id, prev_state, new_state)``, newest last.
    """

    state: str = "closed"
    failure_count: int = 0
    last_failure_time: float = 0.0
    open_until: float = 0.0
    half_open_probe_active: bool = False
    probe_token: str = ""
    probe_lease_until: float = 0.0
    probe_anchor: float = 0.0
    probe_generation: int = 0
    recent_ops: tuple[tuple[str, str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "failure_count": self.failure_count,
                "last_failure_time": self.last_failure_time, "open_until": self.open_until,
                "half_open_probe_active": self.half_open_probe_active, "probe_token": self.probe_token,
                "probe_lease_until": self.probe_lease_until, "probe_anchor": self.probe_anchor,
                "probe_generation": self.probe_generation, "recent_ops": encode_recent_ops(self.recent_ops)}

    def replace(self, **kw: Any) -> "Record":
        return replace(self, **kw)


DEFAULT = Record()


def q6(x: float) -> float:
    """Quantise a timestamp to its stored precision (``%.6f``), so every path holds equal values."""
    return float("%.6f" % x)


def valid_op_id(op_id: object) -> bool:
    return isinstance(op_id, str) and _OPID_RE.fullmatch(op_id) is not None


def valid_token(token: object) -> bool:
    return isinstance(token, str) and _TOKEN_RE.fullmatch(token) is not None


def _text(raw: Any) -> str | None:
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8", "strict")
        except UnicodeDecodeError:
            return None
    if isinstance(raw, str):
        return raw
    return None


def decode_int(raw: Any) -> int | None:
    s = _text(raw)
    if s is None or _INT_RE.fullmatch(s) is None or len(s) > 10:
        return None
    v = int(s)
    return v if v <= MAX_COUNT else None


def decode_float(raw: Any) -> float | None:
    s = _text(raw)
    if s is None or _FLOAT_RE.fullmatch(s) is None:
        return None
    v = float(s)
    return v if math.isfinite(v) and v <= MAX_TIME else None


def decode_bool(raw: Any) -> bool | None:
    s = _text(raw)
    return True if s == "True" else False if s == "False" else None


def decode_recent_ops(raw: Any) -> tuple[tuple[tuple[str, str, str], ...], bool]:
    """Entries that parse; the flag says whether any were dropped."""
    s = _text(raw)
    if s is None:
        return (), True
    out = []
    dropped = False
    for part in s.split(" "):
        if not part:
            continue
        m = _ENTRY_RE.fullmatch(part)
        if m is None:
            dropped = True
            continue
        out.append((m.group(1), m.group(2), m.group(3)))
    return tuple(out[-RECENT_OPS_MAX:]), dropped


def encode_recent_ops(ops: tuple[tuple[str, str, str], ...]) -> str:
    return " ".join(f"{o}={a}>{b}" for o, a, b in ops)


def decode(raw: Mapping[Any, Any] | None) -> tuple[Record, tuple[str, ...]]:
    """Decode a raw hash (bytes or str keys/values) to ``(record, corrupt_field_names)``.

    Missing fields take their defaults silently; present-but-invalid fields are repaired to the
    default and named. Rule N is *not* applied here (see :func:`kernel.normalize`).
    """
    if not raw:
        return DEFAULT, ()
    vals: dict[str, Any] = {}
    for k, v in raw.items():
        key = _text(k)
        if key in FIELDS:
            vals[key] = v
    kw: dict[str, Any] = {}
    corrupt: list[str] = []
    for name in FIELDS:
        if name not in vals:
            continue
        v = vals[name]
        if name == "state":
            s = _text(v)
            dv: Any = s if s in STATES else None
        elif name in INT_FIELDS:
            dv = decode_int(v)
        elif name in FLOAT_FIELDS:
            dv = decode_float(v)
        elif name == "half_open_probe_active":
            dv = decode_bool(v)
        elif name == "probe_token":
            s = _text(v)
            dv = s if s is not None and (s == "" or _TOKEN_RE.fullmatch(s)) else None
        else:
            dv, dropped = decode_recent_ops(v)
            if dropped:
                corrupt.append(name)
            kw[name] = dv
            continue
        if dv is None:
            corrupt.append(name)
        else:
            kw[name] = dv
    return (Record(**kw) if kw else DEFAULT), tuple(corrupt)


def encode(rec: Record) -> dict[str, str]:
    """Canonical encoding of every field (what every path writes)."""
    return {
        "state": rec.state,
        "failure_count": str(rec.failure_count),
        "last_failure_time": "%.6f" % rec.last_failure_time,
        "open_until": "%.6f" % rec.open_until,
        "half_open_probe_active": "True" if rec.half_open_probe_active else "False",
        "probe_token": rec.probe_token,
        "probe_lease_until": "%.6f" % rec.probe_lease_until,
        "probe_anchor": "%.6f" % rec.probe_anchor,
        "probe_generation": str(rec.probe_generation),
        "recent_ops": encode_recent_ops(rec.recent_ops),
    }


def record_from_dict(d: Mapping[str, Any]) -> Record:
    """Inverse of :meth:`Record.to_dict` (``recent_ops`` may be a string or a sequence)."""
    kw = {k: d[k] for k in FIELDS if k in d}
    ro = kw.get("recent_ops", ())
    if isinstance(ro, str):
        kw["recent_ops"] = decode_recent_ops(ro)[0]
    else:
        kw["recent_ops"] = tuple(tuple(e) for e in ro)  # type: ignore[misc]
    return Record(**kw)


# Shared test vectors: (field, raw value, expected decoded value or None for corrupt).
CODEC_VECTORS: list[tuple[str, Any, Any]] = [
    ("state", "closed", "closed"), ("state", "open", "open"), ("state", "half_open", "half_open"),
    ("state", "OPEN", None), ("state", "", None), ("state", b"\xff", None), ("state", " open", None),
    ("failure_count", "0", 0), ("failure_count", "7", 7), ("failure_count", "2147483647", 2147483647),
    ("failure_count", "2147483648", None), ("failure_count", "-1", None), ("failure_count", "07", None),
    ("failure_count", "0x10", None), ("failure_count", "1_0", None), ("failure_count", " 1", None),
    ("failure_count", "abc", None), ("failure_count", "1.0", None), ("failure_count", "", None),
    ("open_until", "0.0", 0.0), ("open_until", "1795338880.2728412", 1795338880.2728412),
    ("open_until", "1795338880.2562", 1795338880.2562), ("open_until", "12", 12.0),
    ("open_until", "1e3", 1000.0), ("open_until", "1E+2", 100.0), ("open_until", "nan", None),
    ("open_until", "inf", None), ("open_until", "1e999", None), ("open_until", "-5.0", None),
    ("open_until", "0x10", None), ("open_until", "1.", None), ("open_until", ".5", None),
    ("open_until", "2e11", None), ("open_until", " 1.0", None), ("open_until", b"\xc3\x28", None),
    ("half_open_probe_active", "True", True), ("half_open_probe_active", "False", False),
    ("half_open_probe_active", "true", None), ("half_open_probe_active", "TRUE", None),
    ("half_open_probe_active", "1", None), ("half_open_probe_active", "0", None),
    ("half_open_probe_active", "", None), ("half_open_probe_active", " True", None),
    ("half_open_probe_active", "false", None), ("half_open_probe_active", b"\xff", None),
    ("probe_token", "", ""), ("probe_token", "3:" + "a" * 32, "3:" + "a" * 32),
    ("probe_token", "3:" + "A" * 32, None), ("probe_token", "x:" + "a" * 32, None),
    ("probe_generation", "12", 12), ("probe_generation", "-3", None),
]
