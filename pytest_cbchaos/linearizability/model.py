"""The public ``Model`` protocol (docs/linearizability-design.md#model-interface) and the power-set adapter.

A model is a sequential specification: ``init()`` gives the initial (immutable, hashable) state
and ``step(state, op)`` is a pure function returning ``(legal, next_state)``. ``op`` exposes
``f``, ``input``, ``output`` and ``unknown``; when ``unknown`` is true any output is accepted but
the next state is still computed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Hashable, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from ..history.ops import Op


@runtime_checkable
class ModelProtocol(Protocol):
    name: str

    def init(self) -> Hashable: ...
    def step(self, state: Any, op: Op) -> tuple[bool, Any]: ...
    def partition(self, ops: Sequence[Op]) -> Mapping[Any, Sequence[Op]]: ...
    def read_only(self, f: str) -> bool: ...


class Model:
    """Base class with the protocol's defaults; subclass and override ``init``/``step``."""

    name = "model"
    #: set True when ``equal``/``hash`` are overridden (the checker then uses hash buckets)
    custom_equality = False
    #: optional: a slower model that accepts every history this one does and judges crashed ops
    #: exactly; the checker re-checks an ILLEGAL partition with crashed ops against it
    confirm_model: "Model | None" = None

    def init(self) -> Any:
        raise NotImplementedError

    def step(self, state: Any, op: Op) -> tuple[bool, Any]:
        raise NotImplementedError

    def equal(self, a: Any, b: Any) -> bool:
        return a == b

    def hash(self, s: Any) -> int:
        return hash(s)

    def partition(self, ops: Sequence[Op]) -> Mapping[Any, Sequence[Op]]:
        """Default: a single partition (key ``None``). Must be P-compositional."""
        return {None: list(ops)}

    def read_only(self, f: str) -> bool:
        return False

    def describe_op(self, op: Op) -> str:
        out = "?" if op.unknown else _short(op.output)
        inp = "" if op.input is None else _short(op.input)
        key = f"[{op.key}]" if op.key is not None else ""
        return f"{op.f}{key}({inp}) -> {out}"

    def describe_state(self, s: Any) -> str:
        return _short(s)

    def explain(self, s: Any, op: Op) -> str:
        ok, _ = self.step(s, op)
        if ok:
            return f"{self.describe_op(op)} is legal in state {self.describe_state(s)}"
        return f"{self.describe_op(op)} is not legal in state {self.describe_state(s)}"


def partition_by_key(ops: Sequence[Op]) -> dict[Any, list[Op]]:
    """Group ops by ``op.key`` (the usual P-compositional split: one object per key)."""
    parts: dict[Any, list[Op]] = defaultdict(list)
    for op in ops:
        parts[op.key].append(op)
    return dict(parts)


def _short(v: Any, limit: int = 120) -> str:
    s = "nil" if v is None else repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


class NondeterministicModel:
    """A specification with several possible next states (``step_all``)."""

    name = "nondeterministic"

    def init_states(self) -> Iterable[Any]:
        raise NotImplementedError

    def step_all(self, state: Any, op: Op) -> Iterable[Any]:
        raise NotImplementedError

    def partition(self, ops: Sequence[Op]) -> Mapping[Any, Sequence[Op]]:
        return {None: list(ops)}

    def read_only(self, f: str) -> bool:
        return False

    def to_model(self) -> "PowerSetModel":
        return PowerSetModel(self)


class _XorFrozenSet(frozenset):
    """frozenset whose hash is the XOR of member hashes (Porcupine's power-set hash)."""

    def __hash__(self) -> int:  # type: ignore[override]
        h = 0
        for x in self:
            h ^= hash(x)
        return h


class PowerSetModel(Model):
    """Power-set construction: the state is the set of possible states
    (docs/linearizability-design.md#model-interface)."""

    def __init__(self, nd: NondeterministicModel) -> None:
        self.nd = nd
        self.name = getattr(nd, "name", "nondeterministic")

    def init(self) -> frozenset:
        return _XorFrozenSet(self.nd.init_states())

    def step(self, state: frozenset, op: Op) -> tuple[bool, frozenset]:
        out: set[Any] = set()
        for s in state:
            out.update(self.nd.step_all(s, op))
        return bool(out), _XorFrozenSet(out)

    def partition(self, ops: Sequence[Op]) -> Mapping[Any, Sequence[Op]]:
        return self.nd.partition(ops)

    def read_only(self, f: str) -> bool:
        return self.nd.read_only(f)

    def describe_state(self, s: Any) -> str:
        return "{" + ", ".join(sorted(_short(x) for x in s)) + "}"
