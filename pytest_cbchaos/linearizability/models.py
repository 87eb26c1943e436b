"""Built-in models: register, cas-register (etcd), kv, counter, set; a name registry.

Values are compared after the normalisation in ``values.py`` (docs/linearizability.md, Values).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..history.ops import MalformedHistory, Op
from ..registry import Registry, load_object, load_systems
from .model import Model, _short, partition_by_key
from .greedy import attempt as greedy_attempt
from .search import NO_VALUE
from .zones import ZoneDecision, decide as decide_register
from .values import (ValueTypeMismatch, as_int, canonical, check_kinds, is_error_reply, is_scalar,
                     same_value)

_READ = "read"


class RegisterModel(Model):
    """Read/write register; initial value ``initial`` (default None)."""

    name = "register"
    #: the operations ``step`` knows; any other ``f`` is an input error (``validate``)
    ops: tuple[str, ...] = ("read", "write")

    def __init__(self, initial: Any = None) -> None:
        self.initial = initial

    def init(self) -> Any:
        return self.initial

    def step(self, state: Any, op: Op) -> tuple[bool, Any]:
        f = op.f
        if f == "write":
            return True, op.input
        if f == "read":
            return (op.unknown or same_value(op.output, state)), state
        return False, state

    def read_only(self, f: str) -> bool:
        return f == _READ

    def decide(self, ops: Sequence[Op]) -> ZoneDecision | None:
        """The polynomial register decision (``zones.py``) where it applies: plain read/write
        semantics (this class itself, no ``cas``) and distinct written values."""
        if type(self) not in _PLAIN_REGISTERS:
            return None
        return decide_register(ops, initial=self.initial)

    def pure_value(self, op: Op) -> Any:
        """A read is legal in state ``s`` iff ``same_value(output, s)``, unchanged (the search then
        skips ``step``): this class's own read semantics only; ``NO_VALUE`` for a variant's ``step``."""
        if op.f != _READ or op.unknown or type(self) not in _READ_AS_EQUAL:
            return NO_VALUE
        return op.output

    def write_value(self, op: Op) -> Any:
        """A write leads to its input from any state (the search then skips ``step``): this
        class's own write only; ``NO_VALUE`` otherwise."""
        if op.f != "write" or type(self) not in _READ_AS_EQUAL:
            return NO_VALUE
        return op.input

    def validate(self, key: Any, ops: Sequence[Op]) -> None:
        """Reject unknown operations, malformed cas inputs and values of mixed types, each of
        which would otherwise be a false ILLEGAL (or a traceback) rather than an input error."""
        if _all_plain(ops, self.ops):
            return
        _check_ops(self, key, ops)
        check_kinds(_register_values(ops), _what(self, key))

    def op_class(self, op: Op) -> Any:
        """Indeterminate ops with equal class are interchangeable (symmetry reduction)."""
        return (op.f, repr(op.input), repr(op.key))

    def explain(self, s: Any, op: Op) -> str:
        if op.f == "read":
            return f"read {_short(op.output)}, register holds {_short(s)}"
        if op.f not in ("read", "write"):
            return f"unknown operation {op.f!r} for model {self.name}"
        return super().explain(s, op)


class CasRegisterModel(RegisterModel):
    """etcd semantics: initial nil; nil read only before any write; ``cas [old, new]`` -> bool."""

    name = "cas-register"
    ops = ("read", "write", "cas")

    def step(self, state: Any, op: Op) -> tuple[bool, Any]:
        f = op.f
        if f == "read":
            return (op.unknown or same_value(op.output, state)), state
        if f == "write":
            return True, op.input
        if f == "cas":
            old, new = op.input
            if same_value(state, old):
                return (op.unknown or op.output is True), new
            return (op.unknown or op.output is False), state
        return False, state

    def is_pure(self, op: Op) -> bool:
        """Ops that never change the state when legal: reads, failed CAS, CAS [a a]."""
        if op.f == "read":
            return True
        if op.f == "cas":
            old, new = op.input
            return same_value(old, new) or (not op.unknown and op.output is False)
        return False

    def describe_op(self, op: Op) -> str:
        if op.f == "cas" and isinstance(op.input, (list, tuple)) and len(op.input) == 2:
            out = "?" if op.unknown else ("ok" if op.output else "fail")
            key = f"[{op.key}]" if op.key is not None else ""
            return f"cas{key}({_short(op.input[0])} -> {_short(op.input[1])}) -> {out}"
        return super().describe_op(op)

    def explain(self, s: Any, op: Op) -> str:
        if op.f == "cas":
            old = op.input[0]
            if op.output is True:
                return f"cas expected {_short(old)} and applied, register holds {_short(s)}"
            return f"cas expected {_short(old)} and failed, but register holds {_short(s)}"
        return super().explain(s, op)


class KVModel(CasRegisterModel):
    """Key-value map of cas-registers with ``append`` (string concatenation), partitioned by
    ``op.key`` (P-compositional).

    State is a sorted tuple of ``(key, value)`` pairs so an unpartitioned check is also right; a
    key holding ``initial`` (default nil; Porcupine's kv uses ``""``) is left out of it.
    """

    name = "kv"
    ops = ("read", "write", "cas", "append")

    def init(self) -> tuple:
        return ()

    def step(self, state: tuple, op: Op) -> tuple[bool, tuple]:
        key = op.key
        cur = self.initial
        for k, v in state:
            if k == key:
                cur = v
                break
        ok, new = _value_step(self, cur, op)
        if not ok or new == cur:
            return ok, state
        items = [(k, v) for k, v in state if k != key]
        if new != self.initial:
            items.append((key, new))
        items.sort(key=lambda kv: repr(kv[0]))
        return True, tuple(items)

    def partition(self, ops: Sequence[Op]) -> dict[Any, list[Op]]:
        return partition_by_key(ops)

    def partition_model(self, key: Any) -> Any:
        """The model one key's partition is searched with: that key's value alone as the state
        (a smaller memo entry and no pair to rebuild per step). Only this class itself: a
        subclass (a mutant, another partition) is searched with its own ``step``."""
        return _OneKey(key, self.initial) if type(self) is KVModel else self

    def explain(self, s: tuple, op: Op) -> str:
        return _OneKey(op.key, self.initial).explain(dict(s).get(op.key, self.initial), op)


def _value_step(model: CasRegisterModel, cur: Any, op: Op) -> tuple[bool, Any]:
    """One key's kv step on its bare value: cas-register semantics plus ``append``."""
    f = op.f
    if f == _READ:
        return (op.unknown or same_value(op.output, cur)), cur
    if f == "append":  # Porcupine's kv: the value is a string, nil reads as empty
        base, tail = "" if cur is None else cur, op.input
        return True, ((base if type(base) is str else canonical(base))
                      + (tail if type(tail) is str else canonical(tail)))
    return CasRegisterModel.step(model, cur, op)


class _OneKey(CasRegisterModel):
    """``KVModel`` restricted to one key: the state is that key's value; states are described
    as the whole kv state would be, so counterexamples read the same."""

    name = KVModel.name
    ops = KVModel.ops

    def __init__(self, key: Any, initial: Any) -> None:
        super().__init__(initial)
        self.key = key

    step = _value_step  # (self, state, op): one call per step

    def append_value(self, op: Op) -> Any:
        """An append to a string state ``s`` leads to ``s + t`` for this ``t`` (the search then
        skips ``step``); ``NO_VALUE`` for another op."""
        if op.f != "append" or type(self) is not _OneKey:
            return NO_VALUE
        tail = op.input
        return tail if type(tail) is str else canonical(tail)

    def never_illegal(self, ops: Sequence[Op]) -> bool:
        """No order of ``ops`` is illegal: each is a write or an append (legal in any state) or a
        crashed read or cas (any output accepted), so call order is a linearization
        (docs/linearizability-design.md#partitioning-and-scheduling). False where a read or a
        completed cas could be refused, and for a subclass, whose own ``step`` decides."""
        if type(self) is not _OneKey:
            return False
        for op in ops:
            f = op.f
            if f != "write" and f != "append" and not (op.unknown and (f == _READ or f == "cas")):
                return False
        return True

    def greedy(self, ops: Sequence[Op], ents: Any = None,
               deadline: float | None = None) -> tuple[list[tuple[int, Any]] | None, float] | None:
        """A linearization found greedily (``greedy.attempt``) before any search, or None and
        where the greedy got stuck (the search then decides); None for a subclass, whose own
        ``step`` decides (the greedy applies reads, puts and appends of strings as this class's
        ``step`` does). ``ents``: ``search.entries(ops)`` if built already; past ``deadline``
        (``time.monotonic()``) it gives up."""
        if type(self) is not _OneKey:
            return None
        return greedy_attempt(ops, self.initial, ents, deadline)

    def search_tables(self, ops: Sequence[Op]) -> Any:
        """The search's four per-op tables (pure, read, write and append values) in one pass:
        what ``is_pure``, ``pure_value``, ``write_value`` and ``append_value`` give op by op
        (a lighter search setup). None for a subclass, whose own hooks then decide."""
        if type(self) is not _OneKey:
            return None
        no = NO_VALUE
        fs = [op.f for op in ops]
        pv = [no if f != _READ or op.unknown else op.output for f, op in zip(fs, ops)]
        wv = [op.input if f == "write" else no for f, op in zip(fs, ops)]
        av = [no if f != "append" else op.input if type(op.input) is str else canonical(op.input)
              for f, op in zip(fs, ops)]
        if "cas" in fs:
            pure = [f == _READ or (f == "cas" and self.is_pure(op)) for f, op in zip(fs, ops)]
        else:
            pure = [f == _READ for f in fs]
        return pure, pv, wv, av

    def describe_state(self, s: Any) -> str:
        return _short(() if s == self.initial else ((self.key, s),))

    def explain(self, s: Any, op: Op) -> str:
        inner = Model.explain(self, s, op) if op.f == "append" else CasRegisterModel.explain(self, s, op)
        return f"key {op.key!r}: " + inner


#: the models whose ``step`` accepts a read in the state equal to its output, unchanged
_READ_AS_EQUAL = (RegisterModel, CasRegisterModel, _OneKey)

#: the models with plain register semantics: a subclass (a mutant, a user's variant with its
#: own ``step`` or equality) is judged by the search, never by the fast path
_PLAIN_REGISTERS = (RegisterModel, CasRegisterModel, KVModel)


class CounterModel(Model):
    """``incr`` (input = amount, default 1; output not checked) / ``read`` (output = count).

    Amounts and reads may be ints or decimal strings/bytes (Redis ``GET`` replies ``b"3"``); a
    read of nil is 0 (``GET`` of a key no ``INCR`` created yet).
    """

    name = "counter"
    ops = ("incr", "read")

    def init(self) -> int:
        return 0

    def step(self, state: int, op: Op) -> tuple[bool, int]:
        if op.f == "incr":
            return True, state + (1 if op.input is None else as_int(op.input))
        if op.f == "read":
            return (op.unknown or _count(op.output) == state), state
        return False, state

    def read_only(self, f: str) -> bool:
        return f == _READ

    def validate(self, key: Any, ops: Sequence[Op]) -> None:
        """Amounts and read outputs must be integers (or spell one); else a clear input error."""
        _check_ops(self, key, ops)
        for op in ops:
            if op.f == "incr" and op.input is not None:
                _need_int(op, "amount", op.input)
            elif op.f == "read" and not op.unknown and not is_error_reply(op.output):
                _need_int(op, "read value", _count(op.output))

    def explain(self, s: int, op: Op) -> str:
        if op.f == "read":
            return f"read {_short(op.output)}, counter holds {s}"
        return super().explain(s, op)


class SetModel(Model):
    """``add`` (input = element) / ``read`` (output = collection of elements, e.g. ``SMEMBERS``).

    The state holds elements in normalised form (scalars as their Redis string: ``3`` and
    ``b"3"`` are one element), lists as tuples.
    """

    name = "set"
    ops = ("add", "read")

    def init(self) -> frozenset:
        return frozenset()

    def step(self, state: frozenset, op: Op) -> tuple[bool, frozenset]:
        if op.f == "add":
            return True, state | {_element(op.input)}
        if op.f == "read":
            return (op.unknown or frozenset(_element(x) for x in op.output or ()) == state), state
        return False, state

    def read_only(self, f: str) -> bool:
        return f == _READ

    def validate(self, key: Any, ops: Sequence[Op]) -> None:
        """Reads must return a collection; elements must not mix scalars with other types."""
        _check_ops(self, key, ops)
        values = []
        for op in ops:
            if op.f == "add":
                values.append((op, "added element", op.input))
            elif op.f == "read" and not op.unknown and not is_error_reply(op.output):
                if op.output is not None and (isinstance(op.output, (str, bytes, dict))
                                              or not hasattr(op.output, "__iter__")):
                    raise ValueTypeMismatch(
                        f"set: read at event index {op.invoke_index} (process {op.process}) "
                        f"returned {op.output!r} ({type(op.output).__name__}); expected a "
                        "collection of elements (list, set or tuple)")
                values.extend((op, "read element", x) for x in op.output or ())
        check_kinds(values, _what(self, key))
        for op, role, x in values:
            try:
                hash(_element(x))
            except TypeError:
                raise ValueTypeMismatch(
                    f"{_what(self, key)}: {role} {x!r} ({type(x).__name__}) at event index "
                    f"{op.invoke_index} (process {op.process}) is not hashable; expected a "
                    "scalar, a list or another hashable value") from None

    def describe_state(self, s: frozenset) -> str:
        return "{" + ", ".join(sorted(_short(x) for x in s)) + "}"


def _what(model: Any, key: Any) -> str:
    return model.name if key is None else f"{model.name} key {key!r}"


def _check_ops(model: Any, key: Any, ops: Sequence[Op]) -> None:
    what = _what(model, key)
    for op in ops:
        if op.f not in model.ops:
            raise MalformedHistory(
                f"{what}: unknown operation {op.f!r} at event index {op.invoke_index} (process "
                f"{op.process}); expected one of {', '.join(model.ops)}")
        if op.f == "cas" and not (isinstance(op.input, (list, tuple)) and len(op.input) == 2):
            raise MalformedHistory(
                f"{what}: cas value {op.input!r} at event index {op.invoke_index} (process "
                f"{op.process}); expected [old, new]")
        if op.f == "append" and not is_scalar(op.input):
            raise MalformedHistory(
                f"{what}: append value {op.input!r} at event index {op.invoke_index} (process "
                f"{op.process}); expected a string (or bytes or an int, appended as its string)")


def _all_plain(ops: Sequence[Op], known: tuple[str, ...]) -> bool:
    """Every op a read, write, append or cas the model knows, every value compared an exact
    ``str`` or ``int`` (one kind, "scalar", never NaN; or a nil read), a cas input two of them:
    nothing ``_check_ops`` or ``check_kinds`` would reject (the common case, cheaply)."""
    for op in ops:
        f = op.f
        if f == _READ:
            out = op.output
            if out is not None and type(out) is not str and type(out) is not int and not op.unknown:
                return False
        elif f not in known:
            return False
        elif f == "cas":
            inp = op.input
            if (type(inp) is not list and type(inp) is not tuple) or len(inp) != 2:
                return False
            old, new = inp
            if (type(old) is not str and type(old) is not int) or (type(new) is not str and type(new) is not int):
                return False
        elif (f != "write" and f != "append") or (type(op.input) is not str and type(op.input) is not int):
            return False
    return True


def _register_values(ops: Sequence[Op]) -> list[tuple[Op, str, Any]]:
    """``(op, role, value)`` for every value a register partition compares."""
    out = []
    for op in ops:
        if op.f == "write":
            out.append((op, "written value", op.input))
        elif op.f == "cas" and isinstance(op.input, (list, tuple)) and len(op.input) == 2:
            out.append((op, "cas expected value", op.input[0]))
            out.append((op, "cas new value", op.input[1]))
        elif op.f == "append":
            out.append((op, "appended value", op.input))
        elif op.f == "read" and not op.unknown and not is_error_reply(op.output):
            out.append((op, "read value", op.output))
    return out


def _need_int(op: Op, role: str, v: Any) -> None:
    n = as_int(v)
    if not isinstance(n, int) or isinstance(n, bool):
        raise ValueTypeMismatch(
            f"counter: {role} {v!r} ({type(v).__name__}) at event index {op.invoke_index} "
            f"(process {op.process}, {op.f}); expected an integer or a decimal string")


def _count(v: Any) -> Any:
    return 0 if v is None else as_int(v)


def _element(x: Any) -> Any:
    if is_scalar(x):
        return canonical(x)
    if isinstance(x, list):
        return tuple(_element(y) for y in x)
    return x


_REGISTRY: Registry = Registry({
    "register": RegisterModel,
    "cas-register": CasRegisterModel,
    "kv": KVModel,
    "counter": CounterModel,
    "set": SetModel,
})


def register_model(name: str, factory: Callable[[], Any] | str) -> None:
    """Make a model available by name (``cbchaos check --model NAME``); ``factory`` may be a
    ``"package.module:attr"`` string, imported when the model is first used
    (docs/scenarios.md, "Registering a system")."""
    _REGISTRY[name] = factory


def model_names() -> list[str]:
    load_systems(_REGISTRY)
    return sorted(_REGISTRY)


def get_model(name: str) -> Any:
    """Instantiate a registered model; unknown names raise ``ValueError`` listing the choices."""
    load_systems(_REGISTRY)
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(model_names())}") from None
    if isinstance(factory, str):
        factory = _REGISTRY[name] = load_object(factory)  # type: ignore[assignment]
    return factory()  # type: ignore[operator]
