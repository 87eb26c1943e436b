"""Reader for Porcupine's kv histories (``test_data/kv/*.txt``; docs/linearizability.md "Command line").

One EDN map per line, ``{:process P, :type :invoke|:ok|:fail|:info, :f :get|:put|:append,
:key "K", :value "V"|nil}``, the form Porcupine's own test reader accepts (strings are taken
verbatim between the outer quotes, as it does). ``get`` becomes ``read``, ``put`` becomes
``write``, ``append`` stays. Line order is real-time order: ``time`` and ``index`` are the line
number. Porcupine's kv model reads an absent key as ``""``, so these histories are checked with
``KVModel(initial="")`` (:func:`porcupine_kv_model`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

from ..history.ops import MalformedHistory, Op, _crashed_op, pair_events
from ..history.store import History
from .jepsen import operation_lines, paired_history
from .models import KVModel

_LINE = re.compile(r'^\{:process (?P<p>\d+), :type :(?P<t>invoke|ok|fail|info), '
                   r':f :(?P<f>get|put|append), :key "(?P<k>.*)", '
                   r'(?P<v>:value (?:nil|"(?P<s>.*)"|:[\w-]+))\}$')
_F = {"get": "read", "put": "write", "append": "append"}
EXPECTED_LINE = ("a Porcupine kv line '{:process P, :type :invoke|:ok|:fail|:info, "
                 ":f :get|:put|:append, :key \"K\", :value \"V\"|nil}'")


def parse_porcupine_kv_line(line: str) -> tuple[str, int, str, str, Any] | None:
    """``(type, process, f, key, value)`` for an operation line, else None; ``value`` is the
    string, or None for ``nil`` and keywords such as ``:timed-out``."""
    m = _LINE.match(line.strip())
    if m is None:
        return None
    return m["t"], int(m["p"]), _F[m["f"]], m["k"], m["s"]


def read_porcupine_kv(path: str | Path, *, skip_unparsed: bool = False) -> History:
    """Parse a Porcupine kv history into a :class:`History`; errors name the file and line.

    A line that is not an operation is an error (``skip_unparsed`` ignores such lines). Porcupine
    ignores the value of a put/append completion, so the invoke's value is the op's input.
    """
    p = Path(path)
    events: list[dict[str, Any]] = []
    for lineno, (typ, proc, f, key, value) in operation_lines(p, parse_porcupine_kv_line,
                                                              EXPECTED_LINE, skip_unparsed):
        if typ == "invoke" and f != "read" and value is None:
            raise MalformedHistory(f"{p}:{lineno}: {f} of key {key!r} has no string value; "
                                   "expected :value \"V\"")
        if typ != "invoke" and f != "read":
            value = None
        events.append({"type": typ, "process": proc, "f": f, "key": key, "value": value,
                       "time": lineno, "index": lineno})
    return PorcupineKvHistory(paired_history(p, events).events)


class PorcupineKvHistory(History):
    """A history as :func:`read_porcupine_kv` builds it: its ops come from a lighter pairing
    (docs/linearizability-design.md#performance) that trusts the reader's event shape and
    hands any other events (edited since) to the general pairing, which judges them."""

    def ops(self, read_only: Callable[[str], bool] | None = None) -> list[Op]:
        ops = pair_kv_events(self.events, read_only)
        return pair_events(self.client_events(), read_only) if ops is None else ops


def pair_kv_events(events: Sequence[dict[str, Any]],
                   read_only: Callable[[str], bool] | None) -> list[Op] | None:
    """``pair_events(events, read_only)`` for events shaped as the reader writes them (``time``
    = ``index``, an int rising by event; int processes; ``f`` a string matched by the
    completion); None for any other events, and for a history ``pair_events`` would reject."""
    ops: list[Any] = []
    pending: dict[int, tuple[int, dict[str, Any]]] = {}
    retired: set[int] = set()
    last = -1
    try:
        for ev in events:
            t, p, typ = ev["time"], ev["process"], ev["type"]
            if type(t) is not int or t <= last or ev["index"] != t or type(p) is not int or p < 0:
                return None
            last = t
            if typ == "invoke":
                if p in pending or p in retired or type(ev["f"]) is not str:
                    return None
                pending[p] = (len(ops), ev)
                ops.append(None)
                continue
            slot, inv = pending.pop(p)
            if ev["f"] != inv["f"]:
                return None
            if typ == "ok" or typ == "fail":
                ops[slot] = Op(slot, p, inv["f"], inv["value"], ev["value"], inv["time"], t, typ,
                               inv["key"], inv["index"], t, ev.get("error"), (inv, ev))
            elif typ == "info":
                ops[slot] = _crashed_op(slot, inv, ev, read_only)
                retired.add(p)
            else:
                return None
    except (KeyError, TypeError):
        return None
    for slot, inv in pending.values():
        ops[slot] = _crashed_op(slot, inv, None, read_only)
    return ops


def porcupine_kv_model() -> KVModel:
    """Porcupine's kv semantics: every key starts as ``""``."""
    return KVModel(initial="")


def check_porcupine_kv_log(path: str | Path, **kw: Any) -> Any:
    """Parse a Porcupine kv history and check it against :func:`porcupine_kv_model`."""
    from .checker import check
    return check(read_porcupine_kv(path), porcupine_kv_model(), **kw)
