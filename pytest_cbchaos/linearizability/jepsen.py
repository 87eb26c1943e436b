"""Reader for Jepsen etcd logs as shipped with Porcupine's test data (docs/linearizability-design.md#jepsen-logs).

Every non-blank line must be an operation line (``INFO  jepsen.util - P\t:type\t:f\tvalue``);
any other line is an error naming it, unless ``skip_unparsed=True``. Each line becomes one event; ``time`` and ``index`` are the line number (the log
has no timestamps, so line order is real-time order). ``:fail :cas`` is kept as a completed CAS
whose result is ``false``; ``:fail :read`` is a ``fail`` (no effect, dropped before the search);
``:info`` completions are indeterminate.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterator

from ..history.ops import MalformedHistory, pair_events
from ..history.store import History

_PREFIX = r"^\s*INFO\s+jepsen\.util\s+-\s+(?P<p>\d+)\s+"
_INT = r"-?\d+"
_VAL = rf"(?:nil|{_INT})"
_PATTERNS = [
    ("invoke", "read", re.compile(_PREFIX + r":invoke\s+:read\s+nil\s*$")),
    ("invoke", "write", re.compile(_PREFIX + rf":invoke\s+:write\s+(?P<v>{_INT})\s*$")),
    ("invoke", "cas", re.compile(_PREFIX + rf":invoke\s+:cas\s+\[\s*(?P<a>{_VAL})\s+(?P<b>{_VAL})\s*\]\s*$")),
    ("ok", "read", re.compile(_PREFIX + rf":ok\s+:read\s+(?P<v>{_VAL})\s*$")),
    ("ok", "write", re.compile(_PREFIX + rf":ok\s+:write\s+(?P<v>{_INT})\s*$")),
    ("ok", "cas", re.compile(_PREFIX + rf":ok\s+:cas\s+\[\s*(?P<a>{_VAL})\s+(?P<b>{_VAL})\s*\]\s*$")),
    ("failcas", "cas", re.compile(_PREFIX + rf":fail\s+:cas\s+\[\s*(?P<a>{_VAL})\s+(?P<b>{_VAL})\s*\]\s*$")),
    ("fail", "read", re.compile(_PREFIX + r":fail\s+:read\s+\S+\s*$")),
    ("fail", "write", re.compile(_PREFIX + r":fail\s+:write\s+:\S+\s*$")),
    ("fail", "cas", re.compile(_PREFIX + r":fail\s+:cas\s+:\S+\s*$")),
    ("info", "read", re.compile(_PREFIX + r":info\s+:read\s+\S+\s*$")),
    ("info", "write", re.compile(_PREFIX + r":info\s+:write\s+\S+\s*$")),
    ("info", "cas", re.compile(_PREFIX + r":info\s+:cas\s+\S+(?:\s+\S+)?\s*$")),
]


#: every operation line starts ``PREFIX:type<ws>:f``: read those words once, then try only their patterns
_HEAD = re.compile(_PREFIX + r":(\w+)\s+:(\w+)")
_BY_HEAD: dict[tuple[str, str], list[tuple[str, str, re.Pattern[str]]]] = {}
for _entry in _PATTERNS:
    _BY_HEAD.setdefault(("fail" if _entry[0] == "failcas" else _entry[0], _entry[1]), []).append(_entry)


def _val(s: str) -> Any:
    return None if s == "nil" else int(s)


def parse_jepsen_line(line: str) -> tuple[str, int, str, Any] | None:
    """``(type, process, f, value)`` for a recognised line, else None (ignored)."""
    head = _HEAD.match(line)
    if head is None:
        return None
    for typ, f, rx in _BY_HEAD.get(head.group(2, 3), ()):
        m = rx.match(line)
        if m is None:
            continue
        p = int(m.group("p"))
        d = m.groupdict()
        if typ == "invoke":
            if f == "read":
                return "invoke", p, f, None
            if f == "write":
                return "invoke", p, f, int(d["v"])
            return "invoke", p, f, [_val(d["a"]), _val(d["b"])]
        if typ == "ok":
            if f == "cas":
                return "ok", p, f, True
            return "ok", p, f, _val(d["v"])
        if typ == "failcas":
            return "ok", p, "cas", False
        return typ, p, f, None
    return None


class UnrecognisedLine(MalformedHistory):
    """A line of a Jepsen log that is not an operation."""


EXPECTED_LINE = ("a Jepsen operation line 'INFO  jepsen.util - PROCESS<TAB>:invoke|:ok|:fail|:info"
                 "<TAB>:read|:write|:cas<TAB>VALUE'")


def read_jepsen_log(path: str | Path, *, skip_unparsed: bool = False) -> History:
    """Parse a Jepsen etcd log into a :class:`History`; errors name the file and line.

    A line that is not an operation is an error (a log read as the wrong format would
    otherwise check as an empty, trivially linearizable history); ``skip_unparsed`` ignores them.
    """
    p = Path(path)
    events: list[dict[str, Any]] = []
    for lineno, (typ, proc, f, value) in operation_lines(p, parse_jepsen_line, EXPECTED_LINE,
                                                         skip_unparsed):
        events.append({"type": typ, "process": proc, "f": f, "value": value,
                       "time": lineno, "index": lineno, "line": lineno})
    return paired_history(p, events)


def operation_lines(p: Path, parse: Callable[[str], Any], expected: str,
                    skip_unparsed: bool) -> Iterator[tuple[int, Any]]:
    """``(line number, parse(line))`` for each operation line of a log; any other non-blank line
    is an :class:`UnrecognisedLine` naming it (``skip_unparsed`` ignores it)."""
    with open(p, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            parsed = parse(line.rstrip("\n"))
            if parsed is None:
                if skip_unparsed or not line.strip():
                    continue
                raise UnrecognisedLine(f"{p}:{lineno}: unrecognised line {_clip(line)!r}; "
                                       f"expected {expected}")
            yield lineno, parsed


def paired_history(p: Path, events: list[dict[str, Any]]) -> History:
    """The events as a :class:`History`, their pairing checked now so an error names the file."""
    h = History(events)
    try:
        pair_events(h.events)
    except MalformedHistory as exc:
        raise MalformedHistory(f"{p}: {exc}") from None
    return h


def _clip(line: str, limit: int = 80) -> str:
    line = line.rstrip("\n")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def check_jepsen_log(path: str | Path, **kw: Any) -> Any:
    """Parse a Jepsen etcd log and check it against the ``cas-register`` model."""
    from .checker import check
    from .models import CasRegisterModel
    return check(read_jepsen_log(path), CasRegisterModel(), **kw)
