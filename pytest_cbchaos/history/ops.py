"""Events (Jepsen shape) and their pairing into operations (docs/linearizability-design.md#events).

An *event* is a dict ``{type, process, f, value, time, index, [error], [key], [extras...]}``.
Pairing turns the invoke/completion events of each process into :class:`Op` objects and
enforces well-formedness (docs/linearizability-design.md#well-formedness): violations raise :class:`MalformedHistory`
before any search.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

from .read_only import ReadOnlyEvent

INF = math.inf
EVENT_TYPES = ("invoke", "ok", "fail", "info")
NEMESIS = "nemesis"
#: Keys of an event that are not "extras".
CORE_KEYS = ("type", "process", "f", "value", "time", "index", "error", "key")
_CORE = frozenset(CORE_KEYS)
_TYPES = frozenset(EVENT_TYPES)
_NUMBERS = (int, float)
#: the event types ``pair_events`` reads inline (any other goes through ``validate_event``)
_PLAIN_DICTS = (dict, ReadOnlyEvent)


class MalformedHistory(ValueError):
    """A history violates docs/linearizability-design.md#well-formedness; the message names the event index and the
    rule."""


class _Unknown:
    """Output of an indeterminate (``info``) op: any output is accepted."""

    _inst: "_Unknown | None" = None

    def __new__(cls) -> "_Unknown":
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()
_new_op = object.__new__


class Op:
    """One paired operation: ``[call, ret]`` with ``ret = inf`` for ``info`` ops."""

    __slots__ = ("id", "process", "f", "input", "output", "call", "ret", "status", "key",
                 "invoke_index", "complete_index", "error", "_extras", "unknown")
    #: the constructor's parameters, in order
    FIELDS = ("id", "process", "f", "input", "output", "call", "ret", "status", "key",
              "invoke_index", "complete_index", "error", "extras")

    def __init__(self, id: int, process: Any, f: str, input: Any, output: Any, call: float,
                 ret: float, status: str, key: Any = None, invoke_index: int = 0,
                 complete_index: int | None = None, error: Any = None,
                 extras: dict[str, Any] | tuple[dict[str, Any], dict[str, Any] | None] | None = None) -> None:
        """``extras``: a dict, or the op's (invoke, completion) events, whose extra keys are then
        collected on first use (only reports read them; a check pairs every op)."""
        self.id = id
        self.process = process
        self.f = f
        self.input = input
        self.output = output
        self.call = call
        self.ret = ret
        self.status = status
        self.key = key
        self.invoke_index = invoke_index
        self.complete_index = complete_index
        self.error = error
        self._extras = extras or {}
        self.unknown = status == "info"

    @property
    def extras(self) -> dict[str, Any]:
        """The events' non-core keys: the invoke's, then the completion's others."""
        x = self._extras
        if type(x) is tuple:
            x = self._extras = _extras(*x)
        return x

    def __repr__(self) -> str:
        out = "?" if self.unknown else repr(self.output)
        key = f" key={self.key!r}" if self.key is not None else ""
        return (f"Op(#{self.id} p{self.process} {self.f}({self.input!r}) -> {out}{key} "
                f"[{self.call}, {self.ret}] {self.status})")

    def replace(self, **kw: Any) -> "Op":
        vals = {s: getattr(self, s) for s in self.FIELDS}
        vals.update(kw)
        return Op(**vals)

    def with_id(self, id: int) -> "Op":
        """A copy numbered ``id`` (the checker renumbers every partition: keep it cheap)."""
        op = _new_op(Op)
        op.id, op.process, op.f, op.input, op.output = id, self.process, self.f, self.input, self.output
        op.call, op.ret, op.status, op.key, op.invoke_index = self.call, self.ret, self.status, self.key, self.invoke_index
        op.complete_index, op.error, op._extras, op.unknown = self.complete_index, self.error, self._extras, self.unknown
        return op

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "process": self.process, "f": self.f, "input": self.input,
                "output": None if self.unknown else self.output,
                "call": self.call, "ret": None if self.ret == INF else self.ret,
                "status": self.status, "key": self.key, "invoke_index": self.invoke_index,
                "complete_index": self.complete_index, "error": self.error}


def validate_event(ev: Any, where: str = "") -> None:
    """Raise :class:`MalformedHistory` naming ``where`` if ``ev`` is not a well-typed event."""
    loc = f"{where}: " if where else ""
    if not isinstance(ev, dict):
        raise MalformedHistory(f"{loc}event must be a JSON object, got {type(ev).__name__}")
    t = ev.get("type")
    if t not in EVENT_TYPES:
        raise MalformedHistory(f"{loc}key 'type' = {t!r}; expected one of {', '.join(EVENT_TYPES)}")
    p = ev.get("process")
    if not (p == NEMESIS or (isinstance(p, int) and not isinstance(p, bool) and p >= 0)):
        raise MalformedHistory(f"{loc}key 'process' = {p!r}; expected an int >= 0 or \"nemesis\"")
    if p != NEMESIS and not isinstance(ev.get("f"), str):
        raise MalformedHistory(f"{loc}key 'f' = {ev.get('f')!r}; expected a string")
    for k in ("time", "index"):
        v = ev.get(k)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise MalformedHistory(f"{loc}key {k!r} = {v!r}; expected a finite number")


def _finite(v: Any) -> bool:
    t = type(v)
    return t is int or (t is float and v - v == 0.0)


def pair_events(events: Sequence[dict[str, Any]],
                read_only: Callable[[str], bool] | None = None) -> list[Op]:
    """Pair invoke/completion events into ops (fail ops included, with ``status='fail'``).

    Pending invokes at the end get a synthetic ``info`` completion. Crashed reads (``info`` on an
    ``f`` for which ``read_only(f)`` is true) become ``fail`` (docs/linearizability-design.md#completion).
    The common well-formed event is recognised inline; any other goes through
    :func:`validate_event`, which accepts it or names the problem (this runs once per check).
    """
    ops: list[Op] = []
    pending: dict[Any, tuple[int, dict[str, Any]]] = {}
    retired: dict[Any, int] = {}
    last_time: dict[Any, float] = {}
    last_index = None
    types = _TYPES
    for pos, ev in enumerate(events):
        if type(ev) in _PLAIN_DICTS:
            typ, p, t, idx = ev.get("type"), ev.get("process"), ev.get("time"), ev.get("index")
            plain = (typ in types and type(p) is int and p >= 0 and type(ev.get("f")) is str
                     and (type(t) is int or _finite(t)) and (type(idx) is int or _finite(idx)))
        else:
            plain = False
        if not plain:
            validate_event(ev, f"event #{pos}")
            typ, p, t, idx = ev["type"], ev["process"], ev["time"], ev["index"]
        if last_index is not None and idx <= last_index:
            raise MalformedHistory(f"event index {idx}: indexes must be strictly increasing "
                                   f"(previous {last_index})")
        last_index = idx
        if p == NEMESIS:
            continue
        before = last_time.get(p)
        if before is not None and t < before:
            raise MalformedHistory(f"event index {idx}: process {p} time {t} goes backwards "
                                   f"(previous {before})")
        last_time[p] = t
        if typ == "invoke":
            if p in retired:
                raise MalformedHistory(f"event index {idx}: process {p} invokes after its op at "
                                       f"index {retired[p]} completed as info (retired id)")
            if p in pending:
                raise MalformedHistory(f"event index {idx}: process {p} invokes while its op at "
                                       f"index {pending[p][1]['index']} is still pending")
            pending[p] = (len(ops), ev)
            ops.append(None)  # type: ignore[arg-type]
            continue
        if p not in pending:
            raise MalformedHistory(f"event index {idx}: {typ} completion for process {p} "
                                   "without a pending invoke")
        slot, inv = pending.pop(p)
        if ev.get("f") != inv["f"]:
            raise MalformedHistory(f"event index {idx}: completion f={ev.get('f')!r} does not match "
                                   f"invoke f={inv['f']!r} at index {inv['index']}")
        if typ == "info":
            ops[slot] = _crashed_op(slot, inv, ev, read_only)
            retired[p] = idx
        else:  # ok / fail (inline: this runs for most ops of every check)
            ops[slot] = Op(slot, p, inv["f"], inv.get("value"), ev.get("value"), inv["time"], t, typ,
                           inv.get("key", ev.get("key")), inv["index"], idx, ev.get("error"), (inv, ev))
    for p, (slot, inv) in pending.items():
        ops[slot] = _crashed_op(slot, inv, None, read_only)
    return ops


#: an event's key order -> its non-core keys: events of one source share a few shapes
_EXTRA_KEYS: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def _extra_keys(ev: dict[str, Any]) -> tuple[Any, ...]:
    shape = tuple(ev)
    keys = _EXTRA_KEYS.get(shape)
    if keys is None:
        keys = tuple(k for k in shape if k not in _CORE)
        if len(_EXTRA_KEYS) < 1024:
            _EXTRA_KEYS[shape] = keys
    return keys


def _extras(inv: dict[str, Any], comp: dict[str, Any] | None) -> dict[str, Any]:
    """The invoke's non-core keys, then the completion's others (in event order)."""
    ex = {k: inv[k] for k in _extra_keys(inv)}
    if comp is not None:
        for k in _extra_keys(comp):
            if k not in ex:
                ex[k] = comp[k]
    return ex


def _crashed_op(slot: int, inv: dict[str, Any], comp: dict[str, Any] | None,
                read_only: Callable[[str], bool] | None) -> Op:
    """An op completed as ``info`` (``comp``) or still pending at the end (``None``): indeterminate,
    except a crashed read, which had no effect and becomes a ``fail`` (docs/linearizability-design.md#completion)."""
    status = "fail" if read_only is not None and read_only(inv["f"]) else "info"
    if status == "info":
        ret: float = INF
        output: Any = UNKNOWN
    else:
        ret = comp["time"] if comp is not None else inv["time"]
        output = comp.get("value") if comp is not None else None
    return Op(slot, inv["process"], inv["f"], inv.get("value"), output, inv["time"], ret, status,
              inv.get("key", comp.get("key") if comp else None), inv["index"],
              comp["index"] if comp is not None else None, comp.get("error") if comp is not None else None,
              (inv, comp))


def renumber(ops: Iterable[Op]) -> list[Op]:
    """Copy ``ops`` with ids 0..n-1 (the checker numbers each partition densely)."""
    return [op.with_id(i) for i, op in enumerate(ops)]
