"""History container and storage: JSON-lines read/write, EDN export (docs/linearizability-design.md#storage).

``history.jsonl`` holds one event per line in ``index`` order. Fault windows (from a
``FaultJournal``) are written as nemesis ``info`` events, one at the window start and one at its
end, carrying the fault's ``id``, ``kind``, ``target`` and ``params``; reading reconstructs them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .ops import NEMESIS, MalformedHistory, Op, pair_events, validate_event


@dataclass
class History:
    """Events (checker input) plus fault windows ``{id, kind, target, params, start_ns, end_ns}``."""

    events: list[dict[str, Any]]
    faults: list[dict[str, Any]] = field(default_factory=list)

    def ops(self, read_only: Callable[[str], bool] | None = None) -> list[Op]:
        return pair_events(self.client_events(), read_only)

    def client_events(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("process") != NEMESIS]

    def with_nemesis(self) -> list[dict[str, Any]]:
        """Client events merged with nemesis events for the fault windows, re-indexed by time."""
        nem: list[dict[str, Any]] = []
        for w in self.faults:
            base = {"process": NEMESIS, "type": "info", "f": w.get("kind", "fault"),
                    "fault_id": w.get("id"), "target": w.get("target"),
                    "params": w.get("params") or {}}
            nem.append(dict(base, value="start", time=w.get("start_ns", 0)))
            if w.get("end_ns") is not None:
                nem.append(dict(base, value="stop", time=w["end_ns"]))
        if not nem:
            return list(self.events)
        merged = [(e["time"], 0, i, e) for i, e in enumerate(self.events)]
        merged += [(e["time"], 1, i, e) for i, e in enumerate(nem)]
        merged.sort(key=lambda x: (x[0], x[1], x[2]))
        # keep client order stable: re-index everything by position
        return [dict(e, index=i) for i, (_, _, _, e) in enumerate(merged)]


def _default(o: Any) -> Any:
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=repr)
    if isinstance(o, bytes):
        return o.decode("utf-8", "backslashreplace")
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return repr(o)


def dumps_event(ev: dict[str, Any]) -> str:
    return json.dumps(ev, default=_default, separators=(",", ":"))


def write_jsonl(history: History | Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write ``history`` (with fault windows as nemesis events) as JSON lines."""
    h = history if isinstance(history, History) else History(list(history))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as fh:
        for ev in h.with_nemesis():
            fh.write(dumps_event(ev) + "\n")
    return p


class _NonFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    """``json.loads`` accepts ``NaN``/``Infinity``; a history must not (NaN != NaN reads as ILLEGAL)."""
    raise _NonFinite(name)


def read_jsonl(path: str | Path) -> History:
    """Read a JSON-lines history; errors name the file, line and key."""
    p = Path(path)
    events: list[dict[str, Any]] = []
    windows: dict[Any, dict[str, Any]] = {}
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line, parse_constant=_no_constant)
            except _NonFinite as exc:
                raise MalformedHistory(f"{p}:{lineno}: {exc.args[0]} is not a number JSON allows; "
                                       "expected finite numbers") from None
            except json.JSONDecodeError as exc:
                raise MalformedHistory(f"{p}:{lineno}: invalid JSON ({exc.msg} at column "
                                       f"{exc.colno}); expected one event object per line") from None
            validate_event(ev, f"{p}:{lineno}")
            if ev["process"] == NEMESIS and "fault_id" in ev:
                fid = ev["fault_id"]
                w = windows.setdefault(fid, {"id": fid, "kind": ev.get("f"),
                                             "target": ev.get("target"),
                                             "params": ev.get("params") or {},
                                             "start_ns": ev["time"], "end_ns": None})
                if ev.get("value") == "stop":
                    w["end_ns"] = ev["time"]
                continue
            events.append(ev)
    return History(events, faults=list(windows.values()))


def _edn(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_edn(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_edn(k)} {_edn(x)}" for k, x in v.items()) + "}"
    return json.dumps(repr(v))


def write_edn(history: History, path: str | Path) -> Path:
    """Export as EDN (keyword ``:type``/``:f``) for Knossos / Elle / elle-cli cross-checks."""
    p = Path(path)
    with open(p, "w", encoding="utf-8") as fh:
        for ev in history.with_nemesis():
            proc = ":nemesis" if ev["process"] == NEMESIS else str(ev["process"])
            parts = [f":type :{ev['type']}", f":process {proc}", f":f :{ev['f']}",
                     f":value {_edn(ev.get('value'))}", f":time {int(ev['time'])}",
                     f":index {ev['index']}"]
            if ev.get("error") is not None:
                parts.append(f":error {_edn(ev['error'])}")
            if ev.get("key") is not None:
                parts.append(f":key {_edn(ev['key'])}")
            fh.write("{" + ", ".join(parts) + "}\n")
    return p
