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
from itertools import chain
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from ..history.ops import MalformedHistory, Op, _crashed_op, _new_op, pair_events
from ..history.read_only import ReadOnlyEvent
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
    ignores the value of a put/append completion, so the invoke's value is the op's input. The
    history's events are a tuple of read-only events (``history/read_only.py``): checked here
    once, trusted by every check while they are the history's.
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
    paired_history(p, events)
    as_read = tuple(map(ReadOnlyEvent, events))
    history = PorcupineKvHistory(as_read)  # type: ignore[arg-type]
    history.as_read = _AsRead(as_read, tuple(map(_FIELDS, events)))  # read from the plain dicts: faster
    return history


class _AsRead(NamedTuple):
    """The reader's events (read-only, no ``error`` key) and each one's ``_FIELDS``, read once."""

    events: tuple[dict[str, Any], ...]
    rows: tuple[tuple[Any, ...], ...]


class PorcupineKvHistory(History):
    """A history as :func:`read_porcupine_kv` builds it: its ops come from a lighter pairing
    (docs/linearizability-design.md#performance) that trusts the reader's event shape and
    hands any other events to the general pairing, which judges them."""

    #: the events as the reader checked them (read-only); while they are still ``events``, the
    #: lighter pairing reads their fields from here and skips its shape checks
    as_read: "_AsRead | None" = None

    def ops(self, read_only: Callable[[str], bool] | None = None) -> list[Op]:
        ops = pair_kv_events(self.events, read_only, as_read=self._as_read())
        return pair_events(self.client_events(), read_only) if ops is None else ops

    def _as_read(self) -> "_AsRead | None":
        """``as_read`` while the history's events are still those (else None: check them)."""
        got = self.as_read
        return got if got is not None and self.events is got.events else None

    def one_pass_partitions(self, model: Any) -> tuple[dict[Any, list[Op]], Callable[[], list[Op]]] | None:
        """What ``checker.prepare`` makes of ``self.ops()`` for an exact :class:`KVModel`, each op
        built once, in its partition (docs/linearizability-design.md#performance), and the
        history's ops (built when first asked for); None for another model or other events."""
        if type(model) is not KVModel:
            return None
        got = _kv_pass(self.events, model.read_only, plain_kv=True, as_read=self._as_read())
        if got is None:
            return None
        by_key, dropped = got
        every_op = by_key
        if dropped:  # fail ops and crashed reads leave their partition, which may be left empty
            kept = [(k, [op for op in ops if op.status != "fail"]) for k, ops in by_key.items()]
            # keys in the order of their first kept op, as ``partition_by_key`` orders them
            by_key = dict(sorted(((k, ops) for k, ops in kept if ops), key=lambda kv: kv[1][0].invoke_index))
            for ops in by_key.values():
                for i, op in enumerate(ops):
                    op.id = i
        return by_key, lambda: [op.with_id(i) for i, op in enumerate(_in_call_order(every_op))]


def pair_kv_events(events: Sequence[dict[str, Any]], read_only: Callable[[str], bool] | None,
                   *, as_read: _AsRead | None = None) -> list[Op] | None:
    """``pair_events(events, read_only)`` for events shaped as the reader writes them (``time``
    = ``index``, an int rising by event; int processes; ``f`` a string matched by the
    completion); None for any other events, and for a history ``pair_events`` would reject.
    ``as_read``: the events are the reader's own, as it checked them."""
    got = _kv_pass(events, read_only, plain_kv=False, as_read=as_read)
    return None if got is None else [op.with_id(i) for i, op in enumerate(_in_call_order(got[0]))]


def _in_call_order(by_key: dict[Any, list[Op]]) -> list[Op]:
    """Every op of the partitions, in invoke order (one invoke per event index)."""
    return sorted(chain.from_iterable(by_key.values()), key=_INVOKE_INDEX)


#: the ops and values of the kv model's string fast path (``KVModel.validate`` accepts them as they are)
_PLAIN_F = frozenset(("read", "write", "append"))
#: the event fields the pass reads (every reader event has them all)
_FIELDS = itemgetter("time", "index", "process", "type", "f", "key", "value")
_INVOKE_INDEX = attrgetter("invoke_index")


def _kv_pass(events: Sequence[dict[str, Any]], read_only: Callable[[str], bool] | None, *,
             plain_kv: bool, as_read: _AsRead | None = None) -> tuple[dict[Any, list[Op]], bool] | None:
    """One pass over reader-shaped events: the ops by key (each numbered by its place in its
    key's list, which is call order), and whether any is a ``fail`` (a crashed read is one).
    None for events :func:`pair_kv_events` defers, and with ``plain_kv`` for an op outside
    ``_PLAIN_F`` or a value that is not a string where the kv model compares one.
    ``as_read`` (the reader's own events, which it checked, with their fields) skips those
    checks and the field reads; such events have no ``error``."""
    by_key: dict[Any, list[Any]] = {}
    pending: dict[int, Any] = {}  # process -> its open invoke; a crashed op's process -> None
    last = -1
    dropped = False
    plain_f = _PLAIN_F if plain_kv else None
    check = as_read is None
    rows = map(_FIELDS, events) if check else as_read.rows  # type: ignore[union-attr]
    new_op = _new_op
    try:
        # the fields read below: one C call per event, or the reader's tuples
        for ev, (t, idx, p, typ, f, key, value) in zip(events, rows):
            if check:
                if type(t) is not int or t <= last or idx != t or type(p) is not int or p < 0:
                    return None
                last = t
            if typ == "invoke":
                if check and (p in pending or type(f) is not str or (plain_f is not None and (
                        f not in plain_f or (f != "read" and type(value) is not str)))):
                    return None
                part = by_key.get(key)
                if part is None:
                    part = by_key[key] = []
                pending[p] = (len(part), part, ev, t, f, key, value)
                part.append(None)
                continue
            local, part, inv, call, inv_f, inv_key, inv_value = pending.pop(p)  # None: TypeError
            if inv_f != f:
                return None
            if typ == "ok" or typ == "fail":
                if (check and plain_f is not None and f == "read" and value is not None
                        and type(value) is not str):
                    return None
                # ``Op(...)`` field by field (docs/linearizability-design.md#performance)
                op = new_op(Op)
                op.id, op.process, op.f, op.input, op.output = local, p, f, inv_value, value
                op.call, op.ret, op.status, op.key, op.invoke_index = call, t, typ, inv_key, call
                op.complete_index, op._extras, op.unknown = t, (inv, ev), False
                op.error = ev.get("error") if check else None
                if typ == "fail":
                    dropped = True
            elif typ == "info":
                op = _crashed_op(local, inv, ev, read_only)
                dropped = dropped or op.status == "fail"
                pending[p] = None  # a crashed op's process never invokes again
            else:
                return None
            part[local] = op
    except (KeyError, TypeError):
        return None
    for got in pending.values():
        if got is not None:
            local, part, inv = got[:3]
            op = part[local] = _crashed_op(local, inv, None, read_only)
            dropped = dropped or op.status == "fail"
    return by_key, dropped


def porcupine_kv_model() -> KVModel:
    """Porcupine's kv semantics: every key starts as ``""``."""
    return KVModel(initial="")


def check_porcupine_kv_log(path: str | Path, **kw: Any) -> Any:
    """Parse a Porcupine kv history and check it against :func:`porcupine_kv_model`."""
    from .checker import check
    return check(read_porcupine_kv(path), porcupine_kv_model(), **kw)
