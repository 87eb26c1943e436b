"""``timeout`` bounds the whole check: a large search memo is freed off the clock, before the next
check's clock starts, not after the deadline (docs/linearizability-design.md#budgets-and-verdicts)."""

from __future__ import annotations

import pytest

from pytest_cbchaos.linearizability import KVModel, Verdict, check
from pytest_cbchaos.linearizability import search
from pytest_cbchaos.linearizability.checker import prepare
from pytest_cbchaos.linearizability.search import PartitionSearch

#: two keys, each with overlapping writes and a read: every partition fills a memo
_EVENTS = [ev for k in ("x", "y") for ev in (
    {"type": "invoke", "process": f"{k}1", "f": "write", "key": k, "value": 1},
    {"type": "invoke", "process": f"{k}2", "f": "write", "key": k, "value": 2},
    {"type": "ok", "process": f"{k}1", "f": "write", "key": k, "value": None},
    {"type": "ok", "process": f"{k}2", "f": "write", "key": k, "value": None},
    {"type": "invoke", "process": f"{k}3", "f": "read", "key": k, "value": None},
    {"type": "ok", "process": f"{k}3", "f": "read", "key": k, "value": 2})]


def _events() -> list[dict]:
    procs: dict[str, int] = {}
    return [dict(ev, process=procs.setdefault(ev["process"], len(procs)), time=i, index=i)
            for i, ev in enumerate(_EVENTS)]


@pytest.fixture
def retire_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "RETIRE_MIN_ENTRIES", 1)
    search.release_retired()


def test_memos_outlive_the_check_and_the_next_check_frees_them_first(retire_all: None) -> None:
    r = check(_events(), KVModel(), timeout=60)
    assert r.verdict is Verdict.OK
    first = list(search._retired)
    assert len(first) == 2 and all(len(m) > 0 for m in first)  # not freed on the check's clock
    check(_events(), KVModel(), timeout=60)
    assert len(search._retired) == 2 and not any(m is f for m in search._retired for f in first)
    assert search.release_retired() == 2 and search._retired == []


def test_small_memos_are_freed_at_once() -> None:
    search.release_retired()
    ops = prepare(check(_events(), KVModel()).ops, KVModel())["x"]
    s = PartitionSearch(ops, KVModel().partition_model("x"))
    assert s.run(100) == "ok" and 0 < s.cache_entries < search.RETIRE_MIN_ENTRIES
    del s
    assert search._retired == []
