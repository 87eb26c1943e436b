"""The greedy linearization of kv keys (``greedy.py``, docs/linearizability-design.md#search):
every order it gives is a linearization (checked op by op, independently of it), so it never
turns an illegal history OK; the check decides as the plain search does; it applies to
Porcupine's ok kv histories. Each mutant of its two soundness rules is caught."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_cbchaos.history.ops import INF, Op
from pytest_cbchaos.linearizability import KVModel, Verdict, check
from pytest_cbchaos.linearizability import greedy
from pytest_cbchaos.linearizability.checker import prepare
from pytest_cbchaos.linearizability.models import _OneKey
from pytest_cbchaos.linearizability.porcupine_kv import porcupine_kv_model, read_porcupine_kv
from pytest_cbchaos.linearizability.search import OK, PartitionSearch

KV_DATA = Path(__file__).parent / "data" / "porcupine-kv"
TOKENS = ["a", "b", "ab", "c"]  # repeated and prefix values: the greedy must not rely on unique ones


class GeneralKV(KVModel):
    """A subclass: its partitions are searched with its own ``step`` (no key model, no greedy)."""


def one_key_history(rng: random.Random, legal: bool) -> list[Op]:
    """One key's ops in call order, ids 0..n-1: up to 3 clients at once on a short clock (ties),
    puts, appends and reads, some updates crashed. ``legal``: each op takes effect at a point in
    its window and reads return the state there; else reads return a drawn value."""
    specs = []
    t = 0
    for i in range(rng.randint(1, 9)):
        t += rng.randint(0, 2)
        f = rng.choice(["read", "read", "write", "append", "append"])
        crashed = f != "read" and rng.random() < 0.15
        ret = t + rng.randint(0, 5)
        specs.append((t, INF if crashed else ret, f, None if f == "read" else rng.choice(TOKENS),
                      rng.uniform(t, ret)))
    state, outs = "", {}
    for k in sorted(range(len(specs)), key=lambda k: specs[k][4]):
        call, ret, f, inp, _ = specs[k]
        if f == "write":
            state = inp
        elif f == "append":
            state += inp
        else:
            outs[k] = state if legal else rng.choice(["", *TOKENS, "aab", "abc"])
    return [Op(i, i, f, inp, outs.get(i), call, ret, "info" if ret == INF else "ok", "k", 2 * i,
               None if ret == INF else 2 * i + 1)
            for i, (call, ret, f, inp, _) in enumerate(specs)]


def assert_linearization(ops: list[Op], lin: list[tuple[int, str]]) -> None:
    """``lin`` takes every completed op once (crashed ones at most once), each legal in the kv
    model from ``""`` with the state recorded, and never puts an op before one that returned
    before it was called (the search's entry order: a call before a return at the same time)."""
    ids = [i for i, _ in lin]
    assert len(ids) == len(set(ids))
    assert {op.id for op in ops if not op.unknown} <= set(ids)
    model, state = _OneKey("k", ""), ""
    for i, after in lin:
        ok, state = model.step(state, ops[i])
        assert ok and state == after, (ops[i], after)
    for p, i in enumerate(ids):
        for j in ids[p + 1:]:
            assert not ops[j].ret < ops[i].call, (ops[i], ops[j])


def _cases(n: int = 400) -> list[list[Op]]:
    rng = random.Random(20261208)
    return [one_key_history(rng, legal=k % 2 == 0) for k in range(n)]


def test_greedy_orders_are_linearizations_and_the_search_agrees() -> None:
    found = 0
    for ops in _cases():
        lin = greedy.greedy_linearization(ops, "")
        searched = PartitionSearch(ops, _OneKey("k", "")).run(10**9)
        if lin is not None:
            found += 1
            assert_linearization(ops, lin)
            assert searched == OK, ops
    assert found >= 150  # it applies to most legal ones (of 200 legal, 200 drawn)


@settings(max_examples=300)
@given(st.integers(0, 2**32), st.booleans())
def test_check_with_the_greedy_decides_as_the_plain_search(seed: int, legal: bool) -> None:
    ops = one_key_history(random.Random(seed), legal)
    kept = prepare(ops, KVModel(initial=""))["k"]
    lin = greedy.greedy_linearization(kept, "")
    if lin is not None:
        assert_linearization(kept, lin)
    assert (check(ops, KVModel(initial=""), timeout=None).verdict
            == check(ops, GeneralKV(initial=""), timeout=None).verdict)


def _first_invalid() -> list[Op] | None:
    for ops in _cases():
        lin = greedy.greedy_linearization(ops, "")
        if lin is None:
            continue
        try:
            assert_linearization(ops, lin)
        except AssertionError:
            return ops
    return None


def test_a_greedy_that_serves_reads_of_an_extension_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: after an update, open reads whose value extends the new state are linearized too
    (not only those that read it): reads placed in states they did not read."""
    def loose(apps, puts, i, state, lin, done, reads, pos, last_put):
        state = real(apps, puts, i, state, lin, done, reads, pos, last_put)
        for v in [v for v in reads if v.startswith(state)]:
            for r in reads.pop(v):
                done[r] = True
                lin.append((r, state))
        return state

    real = greedy._apply
    assert _first_invalid() is None
    monkeypatch.setattr(greedy, "_apply", loose)
    assert _first_invalid() is not None


def test_a_greedy_that_moves_puts_before_their_call_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: a put is moved before the latest put even if it was called after that one was
    linearized: an op before one that returned before it was called."""
    monkeypatch.setattr(greedy, "_open_at", lambda put_pos, call_pos: put_pos >= 0)
    assert _first_invalid() is not None


def test_what_the_greedy_does_not_take() -> None:
    read = Op(0, 0, "read", None, "x", 0, 1, "ok", "k", 0, 1)
    cas = Op(0, 0, "cas", ["", "x"], True, 0, 1, "ok", "k", 0, 1)
    ints = Op(0, 0, "write", 3, None, 0, 1, "ok", "k", 0, 1)
    assert greedy.greedy_linearization([cas], "") is None
    assert greedy.greedy_linearization([ints], "") is None
    assert greedy.greedy_linearization([read], None) is None  # nil initial: ``step`` decides
    nil_read = [Op(0, 0, "append", "x", None, 0, 3, "ok", "k", 0, 3), read.replace(id=1, output=None)]
    assert greedy.greedy_linearization(nil_read, "") is None  # a nil read: ``same_value`` decides
    assert greedy.greedy_linearization([read], "") is None  # stuck: the search says ILLEGAL

    class Variant(_OneKey):
        """A subclass has its own ``step``: no greedy."""

    assert Variant("k", "").greedy([read.replace(output="")]) is None
    assert _OneKey("k", "").greedy([read.replace(output="")]) == ([(0, "")], 1.0)


@pytest.mark.parametrize("name", ["c10-ok"])  # c01-ok is sequential: replayed
def test_porcupines_ok_histories_are_linearized_greedily(name: str) -> None:
    result = check(read_porcupine_kv(KV_DATA / f"{name}.txt"), porcupine_kv_model())
    assert result.verdict is Verdict.OK
    for part in result.partitions.values():
        assert part.steps == part.ops  # one step an op: no search
        assert_linearization(part.partition_ops, [(i, _state(part.partition_ops, part.linearization, i))
                                                  for i in part.linearization])


def _state(ops: list[Op], order: list[int], upto: int) -> str:
    state = ""
    for i in order:
        op = ops[i]
        state = state + op.input if op.f == "append" else op.input if op.f == "write" else state
        if i == upto:
            return state
    raise AssertionError(upto)


def _c50_bad_slices_past_four() -> list[str]:
    """c50-bad's legal-or-undecided partitions that ran a fifth slice before the illegal one
    ("3", after 4,992 steps) was found."""
    from pytest_cbchaos.linearizability.checker import SLICE
    result = check(read_porcupine_kv(KV_DATA / "c50-bad.txt"), porcupine_kv_model(), timeout=60)
    (bad,) = result.failing()
    assert bad.key == "3" and 4 * SLICE < bad.steps <= 5 * SLICE
    return [k for k, p in result.partitions.items() if k != "3" and p.steps > 4 * SLICE]


def test_partitions_the_greedy_got_stuck_in_early_are_searched_first() -> None:
    """After the first round the scheduler runs first the partitions whose greedy got stuck
    earliest (c50-bad's illegal key is stuck at a fifth of its entries): no other partition runs
    a fifth slice before it."""
    assert _c50_bad_slices_past_four() == []


def test_a_scheduler_that_ignores_where_the_greedy_got_stuck_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: no hint (every greedy stuck at the end): the key order, seven partitions before
    the illegal one run their fifth slice."""
    from pytest_cbchaos.linearizability import models
    monkeypatch.setattr(models, "greedy_attempt", lambda ops, initial, ents=None, deadline=None: (
        greedy.greedy_linearization(ops, initial, ents, deadline), 1.0))
    assert len(_c50_bad_slices_past_four()) == 7


def test_the_greedy_gives_up_past_the_deadline() -> None:
    """A long key's scan checks the check's deadline every 1,024 entries (the search then meets
    the deadline too): past it, no linearization, though one exists (1,200 entries)."""
    import time
    ops = [Op(i, i, "append", f"x{i}y", None, 2 * i, 2 * i + 1, "ok", "k", 2 * i, 2 * i + 1)
           for i in range(600)]
    assert greedy.greedy_linearization(ops, "") is not None
    assert greedy.attempt(ops, "", deadline=time.monotonic() - 1) == (None, 1.0)
    assert greedy.attempt(ops, "", deadline=time.monotonic() + 60)[0] is not None


def test_partition_results_are_built_in_their_field_order() -> None:
    """The scheduler builds ``PartitionResult`` by position (cheaper than by keyword): a field
    moved or added before ``partition_ops`` would shift the values silently; this names it."""
    from dataclasses import fields

    from pytest_cbchaos.linearizability.checker import _RESULT_FIELDS, PartitionResult, _cancelled
    assert tuple(f.name for f in fields(PartitionResult))[:len(_RESULT_FIELDS)] == _RESULT_FIELDS
    ops = [Op(0, 0, "write", "x", None, 0, 1, "ok", "k"), Op(1, 1, "write", "y", None, 0, INF, "info", "k")]
    r = _cancelled("k", ops)
    assert (r.key, r.verdict, r.ops, r.required, r.steps, r.reason, r.partition_ops) == (
        "k", Verdict.UNKNOWN, 2, 1, 0, "cancelled: another partition is illegal", ops)
