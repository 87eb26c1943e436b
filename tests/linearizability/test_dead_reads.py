"""Dead-read pruning and the reads-first candidate order never change a verdict
(docs/linearizability-design.md#search): on generated kv partitions with writes, appends, cas
and crashed updates, correct and perturbed, the search agrees with itself without the pruning,
with the plain search (no fast paths, so neither) and with a brute-force enumeration; and two
mutants of the pruning's reset masks are caught."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bruteforce import brute

from pytest_cbchaos.history.ops import INF, Op
from pytest_cbchaos.linearizability import Verdict, check
from pytest_cbchaos.linearizability.models import KVModel
from pytest_cbchaos.linearizability.search import NO_VALUE, PartitionSearch, _tables

_STRINGS = ["", "a", "b", "ab", "ba", "aab"]


def _model() -> Any:
    return KVModel(initial="").partition_model("k")


class _NoPruning(PartitionSearch):
    """The same search with no dead-read pruning (the candidate order kept)."""

    def _settle_masks(self, kinds: list[int], op_of: list[int]) -> list[int | None]:
        return [None] * len(self.ops)


@st.composite
def _partitions(draw: Any) -> list[Op]:
    """One key's ops, simulated at drawn linearization points (a crashed update may not take
    effect), then maybe one read's value replaced by a prefix or extension of another."""
    n = draw(st.integers(1, 7))
    specs = []
    for i in range(n):
        f = draw(st.sampled_from(["read", "read", "append", "append", "write", "cas"]))
        call, dur = draw(st.integers(0, 10)), draw(st.integers(0, 6))
        inp: Any = None
        if f in ("append", "write"):
            inp = draw(st.sampled_from(["a", "b"]))
        elif f == "cas":
            inp = [draw(st.sampled_from(_STRINGS[:4])), draw(st.sampled_from(["a", "b"]))]
        crashed = f != "read" and draw(st.integers(0, 4)) == 0
        specs.append((call, call + dur, call + draw(st.integers(0, dur)), i, f, inp, crashed))
    state = ""
    outs: dict[int, Any] = {}
    for _, _, _, i, f, inp, crashed in sorted(specs, key=lambda s: (s[2], s[3])):
        if crashed and draw(st.booleans()):
            continue
        if f == "read":
            outs[i] = state
        elif f == "append":
            state += inp
        elif f == "write":
            state = inp
        else:
            outs[i] = state == inp[0]
            state = inp[1] if outs[i] else state
    reads = sorted(i for i, (*_, f, _, _) in enumerate(sorted(specs, key=lambda s: s[3])) if f == "read")
    if reads and draw(st.booleans()):
        outs[draw(st.sampled_from(reads))] = draw(st.sampled_from(_STRINGS))
    ops = [Op(0, i, f, inp, None if crashed else outs.get(i), call, INF if crashed else ret,
              "info" if crashed else "ok", key="k")
           for call, ret, _, i, f, inp, crashed in sorted(specs)]
    return [op.with_id(j) for j, op in enumerate(ops)]


@settings(deadline=None)
@given(_partitions())
def test_pruned_search_agrees_with_unpruned_plain_and_brute_force(ops: list[Op]) -> None:
    fast = _model()
    plain = type("Plain", (type(fast),), {})("k", "")  # a variant: no fast-path values
    expect = "ok" if brute(ops, fast) else "illegal"
    pruned = PartitionSearch(ops, fast)
    assert pruned.run(10**9) == expect
    assert _NoPruning(ops, fast).run(10**9) == expect
    assert PartitionSearch(ops, plain).run(10**9) == expect
    assert PartitionSearch(ops, fast, track=True).run(10**9) == expect


@settings(deadline=None)
@given(_partitions())
def test_search_tables_in_one_pass_agree_with_the_per_op_hooks(ops: list[Op]) -> None:
    model = _model()
    assert model.search_tables(ops) == _tables(model, ops)
    assert type("Variant", (type(model),), {})("k", "").search_tables(ops) is None


def test_a_wrong_search_table_is_caught() -> None:
    """Mutant: one-pass tables that append the tail twice make a legal history ILLEGAL."""
    ops = [Op(0, 0, "append", "a", None, 0, 1, "ok", key="k"),
           Op(1, 1, "read", None, "a", 2, 3, "ok", key="k")]

    def doubled(self: Any, ops: list[Op]) -> Any:
        pure, pv, wv, av = _tables(_model(), ops)
        return pure, pv, wv, [t if t is NO_VALUE else t * 2 for t in av]

    assert PartitionSearch(ops, _model()).run(100) == "ok"
    mutant = type("Mutant", (type(_model()),), {"search_tables": doubled})("k", "")
    assert PartitionSearch(ops, mutant).run(100) == "illegal"


def test_pruning_cuts_steps_and_names_the_dead_read() -> None:
    """Appends of "a" then "b" (sequential), then a read of "ba": after both appends nothing can
    reset the state before the read returns, so the read is dead where it is met."""
    ops = [Op(0, 0, "append", "a", None, 0, 1, "ok", key="k"),
           Op(1, 1, "append", "b", None, 2, 3, "ok", key="k"),
           Op(2, 2, "read", None, "ba", 4, 5, "ok", key="k")]
    s, plain = PartitionSearch(ops, _model()), _NoPruning(ops, _model())
    assert s.run(100) == plain.run(100) == "illegal"
    assert (s.steps, plain.steps) == (5, 6)  # the read, then the returns of b and a
    cx = check(ops, KVModel(initial=""), mode="report").counterexample
    assert cx["first_unplaceable"]["describe"] == "read[k]() -> 'ba'"
    assert cx["attempts"][-1]["explain"] == "key 'k': read 'ba', register holds 'ab'"


class _MaskAtCall(PartitionSearch):
    """Mutant: the resets a read waits for are those called before the read is *called*."""

    def _settle_masks(self, kinds: list[int], op_of: list[int]) -> list[int | None]:
        settled: list[int | None] = [None] * len(self.ops)
        resets = 0
        for e in range(1, len(kinds) - 1):
            i = op_of[e]
            if kinds[e]:
                continue
            if self.pt[i] is str:
                settled[i] = resets
            elif not self.pure[i] and self.av[i] is NO_VALUE:
                resets |= 1 << i
        return settled


class _NoResets(PartitionSearch):
    """Mutant: every read treated as if no write could still come before it."""

    def _settle_masks(self, kinds: list[int], op_of: list[int]) -> list[int | None]:
        return [0 if t is str else None for t in self.pt]


@pytest.mark.parametrize("mutant", [_MaskAtCall, _NoResets])
def test_a_wrong_reset_mask_is_caught(mutant: type[PartitionSearch]) -> None:
    """Legal: append "a", then a read of "b" whose interval holds a write of "b" called after
    the read was: the write can take effect first. A mask taken at the read's call, or one
    without the write, calls the read dead in state "a"."""
    ops = [Op(0, 0, "append", "a", None, 0, 1, "ok", key="k"),
           Op(1, 1, "read", None, "b", 2, 5, "ok", key="k"),
           Op(2, 2, "write", "b", None, 3, 4, "ok", key="k")]
    assert PartitionSearch(ops, _model()).run(100) == "ok"
    assert check(ops, KVModel(initial="")).verdict is Verdict.OK
    assert mutant(ops, _model()).run(100) == "illegal"
