"""Recorder: threads, asyncio tasks, worker processes (incl. SIGKILL mid-op), fault windows,
JSON-lines / EDN storage and well-formedness."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import threading
from pathlib import Path

import pytest
from _workers import hang_mid_op, writer

from pytest_cbchaos.faults.journal import FaultJournal
from pytest_cbchaos.history import (History, MalformedHistory, Recorder, RecorderClosed,
                                    pair_events, read_jsonl, write_edn, write_jsonl)
from pytest_cbchaos.linearizability import CasRegisterModel, Verdict, check


def test_threads_record_a_checkable_history() -> None:
    rec = Recorder(4)
    lock = threading.Lock()
    reg = {"v": None}
    barrier = threading.Barrier(4)

    def work(w: int) -> None:
        barrier.wait(timeout=10)
        for i in range(25):
            # atomic register; timestamps taken inside the critical section (docs/linearizability-design.md#time)
            with lock:
                if i % 2:
                    h = rec.invoke(w, "write", w * 100 + i)
                    reg["v"] = w * 100 + i
                    h.ok()
                else:
                    h = rec.invoke(w, "read")
                    h.ok(reg["v"])

    ts = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    rec.close()
    h = rec.history()
    assert len(h.events) == 200
    assert [e["index"] for e in h.events] == list(range(200))
    assert check(h, CasRegisterModel()).verdict is Verdict.OK


def test_lost_write_mutant_is_caught() -> None:
    """Mutant register: a write acknowledged while a concurrent write is in flight is lost."""
    rec = Recorder(3)
    reg = {"v": 0}
    both_in_flight = threading.Barrier(2)

    def writer_thread(w: int, v: int, lose: bool) -> None:
        h = rec.invoke(w, "write", v)
        both_in_flight.wait(5)
        if not lose:
            reg["v"] = v
        h.ok()

    ts = [threading.Thread(target=writer_thread, args=(0, 1, False)),
          threading.Thread(target=writer_thread, args=(1, 2, True))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    h = rec.invoke(2, "read")
    h.ok(reg["v"])  # reads 1: fine, write(2) may precede write(1)
    h = rec.invoke(0, "write", 5)
    h.ok()          # mutant drops this write too
    h = rec.invoke(2, "read")
    h.ok(reg["v"])  # reads 1 after write(5) completed: illegal
    rec.close()
    r = check(rec.history(), CasRegisterModel(), mode="report")
    assert r.verdict is Verdict.ILLEGAL
    assert r.counterexample["first_unplaceable"]["describe"] == "read() -> 1"


def test_asyncio_tasks_share_the_recorder() -> None:
    rec = Recorder(3)

    async def task(w: int) -> None:
        for i in range(10):
            h = rec.invoke(w, "write", i, key=f"k{w}")
            await asyncio.sleep(0)
            h.ok()

    async def main() -> None:
        await asyncio.gather(*(task(w) for w in range(3)))

    asyncio.run(main())
    rec.close()
    ops = rec.history().ops()
    assert len(ops) == 30 and {op.key for op in ops} == {"k0", "k1", "k2"}


def test_op_context_classifies_exceptions() -> None:
    import redis.exceptions as rex
    rec = Recorder(1)
    with pytest.raises(rex.TimeoutError):
        with rec.op(0, "write", 1):
            raise rex.TimeoutError("boom")
    with pytest.raises(rex.ResponseError):
        with rec.op(0, "write", 2):
            raise rex.ResponseError("ERR nope")
    with rec.op(0, "read") as h:
        h.ok(3)
    evs = rec.events()
    assert [e["type"] for e in evs] == ["invoke", "info", "invoke", "ok", "invoke", "ok"]
    assert evs[1]["error"][0] == "timeout"
    # retired on info: the worker continues under a new process id
    assert evs[0]["process"] == 0 and evs[2]["process"] == 1
    assert evs[3]["value"] == {"error": "ERR nope"}


def test_processes_stream_over_pipes_and_sigkill_yields_info(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    rec = Recorder(3)
    started = ctx.Event()
    procs = [ctx.Process(target=writer, args=(rec.remote(0), 20)),
             ctx.Process(target=writer, args=(rec.remote(1), 20)),
             ctx.Process(target=hang_mid_op, args=(rec.remote(2), started))]
    try:
        for p in procs:
            p.start()
        assert started.wait(30), "worker 2 never started its op"
        os.kill(procs[2].pid, signal.SIGKILL)
        for p in procs:
            p.join(30)
        assert rec.join_remotes(10)
        assert rec.pending_workers() == [2]
        assert rec.crash_worker(2)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    rec.close()
    h = rec.history()
    ops = h.ops()
    crashed = [op for op in ops if op.status == "info"]
    assert len(ops) == 41 and len(crashed) == 1 and crashed[0].input == 99
    assert rec.process_id(2) == 5  # retired and renumbered worker + n_workers
    out = write_jsonl(h, tmp_path / "history.jsonl")
    assert check(read_jsonl(out), CasRegisterModel()).verdict in (Verdict.OK, Verdict.ILLEGAL)
    # writes only + a crashed write: linearizable
    assert check(h, CasRegisterModel()).verdict is Verdict.OK


def test_fault_windows_attach_to_ops_and_round_trip(tmp_path: Path) -> None:
    journal = FaultJournal()
    rec = Recorder(1, journal=journal)
    rec.invoke(0, "write", 1).ok()
    with journal.window("latency", "redis", {"ms": 50}) as w:
        rec.invoke(0, "write", 2).ok()
    rec.invoke(0, "read").ok(2)
    rec.nemesis("sigkill", "worker-3")
    rec.close()
    evs = rec.events()
    assert "faults" not in evs[0] and evs[2]["faults"] == [w.id] and "faults" not in evs[4]
    h = rec.history()
    assert h.faults[0]["kind"] == "latency" and h.faults[0]["end_ns"] >= h.faults[0]["start_ns"]
    p = write_jsonl(h, tmp_path / "h.jsonl")
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    nem = [x for x in lines if x["process"] == "nemesis"]
    assert len(nem) == 3  # start + stop of the window, plus the recorded sigkill
    back = read_jsonl(p)
    assert back.faults[0]["kind"] == "latency" and back.faults[0]["params"] == {"ms": 50}
    assert [op.input for op in back.ops()] == [1, 2, None]
    assert check(back, CasRegisterModel()).verdict is Verdict.OK
    edn = write_edn(back, tmp_path / "h.edn").read_text()
    assert ":type :invoke" in edn and ":process :nemesis" in edn


def test_recorder_refuses_after_close_and_misuse() -> None:
    rec = Recorder(2)
    h = rec.invoke(0, "write", 1)
    with pytest.raises(RuntimeError, match="still pending"):
        rec.invoke(0, "write", 2)
    h.ok()
    with pytest.raises(RuntimeError, match="twice"):
        h.ok()
    with pytest.raises(ValueError, match="worker"):
        rec.invoke(7, "read")
    rec.invoke(1, "read")
    rec.close()
    assert rec.events()[-1]["type"] == "info"  # pending at close -> info
    with pytest.raises(RecorderClosed):
        rec.invoke(0, "read")


def test_read_jsonl_errors_are_located(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"type":"invoke","process":0,"f":"read","value":null,"time":0,"index":0}\n'
                 '{"type":"bogus","process":0,"f":"read","value":null,"time":1,"index":1}\n')
    with pytest.raises(MalformedHistory, match=r"bad.jsonl:2: key 'type' = 'bogus'"):
        read_jsonl(p)
    p.write_text("{not json\n")
    with pytest.raises(MalformedHistory, match=r"bad.jsonl:1: invalid JSON"):
        read_jsonl(p)


def test_memory_per_event_is_small() -> None:
    import tracemalloc
    rec = Recorder(4)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(5_000):
        rec.invoke(i % 4, "write", i).ok()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    per_event = used / 10_000
    assert per_event < 500, per_event  # 100,000 events < 50 MB


def test_pairing_extras_preserved() -> None:
    evs = [{"type": "invoke", "process": 0, "f": "w", "value": 1, "time": 0, "index": 0,
            "worker": 0, "conn": "c1"},
           {"type": "ok", "process": 0, "f": "w", "value": None, "time": 1, "index": 1}]
    op = pair_events(evs)[0]
    assert op.extras == {"worker": 0, "conn": "c1"}
