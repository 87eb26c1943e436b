"""The closed-state fast path of the gate and record_success scripts (docs/breaker-design.md#closed-state-fast-path):
on a real redis-server it answers every canonical CLOSED record, declines every other one, and its replies equal
the kernel's (``InMemoryStore``) for the same raw record; asked brief (the hot ops), it leaves out only the
``recent_ops`` entries, giving their count; a fast path with a weakened check or brief reply is caught."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import redis

from pytest_cbchaos.breaker import InMemoryStore, RedisStore
from pytest_cbchaos.breaker.record import CODEC_VECTORS
from pytest_cbchaos.breaker.redis_store import _SCRIPTS
from pytest_cbchaos.faults.clock import ManualClock

pytestmark = pytest.mark.requires_real_redis

T0 = 1_795_000_000.0
OP = "f" * 32
RETURN = "if FAST then return FAST end"


def _entries(n: int, fmt: str = "{:032x}=closed>open") -> str:
    return " ".join(fmt.format(i) for i in range(n))


CANON = {"state": "closed", "failure_count": "0", "last_failure_time": "1794999990.272841",
         "open_until": "1794999995.272841", "half_open_probe_active": "False", "probe_token": "",
         "probe_lease_until": "0.000000", "probe_anchor": "0.000000", "probe_generation": "3",
         "recent_ops": _entries(16, "{:032x}=half_open>closed")}
# (name, fields over CANON (None: no record at all), the fast path answers the gate, ... record_success)
SHAPES: list[tuple[str, dict[str, str] | None, bool, bool]] = [
    ("absent", None, True, True),
    ("canonical", {}, True, True),
    ("sparse", {"recent_ops": ""}, True, True),
    ("failures", {"failure_count": "4"}, True, False),  # success writes: the prologue's
    ("one-op", {"recent_ops": _entries(1)}, True, True),
    ("17-ops", {"recent_ops": _entries(17)}, False, False),  # the prologue keeps the newest 16
    ("double-space", {"recent_ops": _entries(2).replace(" ", "  ")}, False, False),
    ("leading-space", {"recent_ops": " " + _entries(2)}, False, False),
    ("trailing-space", {"recent_ops": _entries(2) + " "}, False, False),
    ("tab", {"recent_ops": _entries(2).replace(" ", "\t")}, False, False),
    ("adjacent", {"recent_ops": _entries(2).replace(" ", "") + " " + _entries(1)}, False, False),
    ("upper-hex", {"recent_ops": _entries(2, "{:032X}=closed>open").replace("0", "A")}, False, False),
    ("31-hex", {"recent_ops": _entries(2, "{:031x}=closed>open")}, False, False),
    ("33-hex", {"recent_ops": _entries(2, "{:033x}=closed>open")}, False, False),
    ("bad-state", {"recent_ops": _entries(2, "{:032x}=closed>opened")}, False, False),
    ("no-equals", {"recent_ops": _entries(2, "{:032x}_closed>open")}, False, False),
    # what tonumber(id, 16) takes besides lower-case hex (the fast path's id check, lua/fast_closed.lua)
    ("non-hex", {"recent_ops": _entries(2, "{:032x}=closed>open").replace("0", "g")}, False, False),
    ("0x-id", {"recent_ops": _entries(2, "0x{:030x}=closed>open")}, False, False),
    ("signed-id", {"recent_ops": _entries(2, "-{:031x}=closed>open")}, False, False),
    ("space-in-id", {"recent_ops": _entries(2, "{:031x} =closed>open")}, False, False),
    ("space-led-id", {"recent_ops": _entries(1) + "  " + _entries(1, " {:031x}=closed>open")[1:]}, False, False),
    ("space-led-first", {"recent_ops": _entries(1, " {:031x}=closed>open")}, False, False),
    ("newline-in-id", {"recent_ops": _entries(2, "{:031x}\n=closed>open")}, False, False),
    ("nul-in-id", {"recent_ops": _entries(2, "{:031x}\0=closed>open")}, False, False),
    ("upper-c-id", {"recent_ops": _entries(2, "C{:031x}=closed>open")}, False, False),
    ("this-op", {"recent_ops": _entries(2) + f" {OP}=closed>closed"}, False, False),  # a duplicate
    ("open", {"state": "open"}, False, False),
    ("float-form", {"open_until": "1e3"}, False, False),  # valid, not the codec's form: the prologue's
    ("lease-left", {"probe_lease_until": "5.000000"}, False, False),
]
RECORDS = SHAPES + [(f"{f}={raw!r}", {f: raw}, False, False) for f, raw, _ in CODEC_VECTORS]  # equivalence only


def _fields(over: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if over is None else {**CANON, **over}


def _calls(s: Any) -> list[tuple[str, Any]]:
    return [("gate", lambda: s.try_transition_and_claim_probe("b", T0, 10, op_id=OP)),
            ("success", lambda: s.atomic_record_success("b", op_id=OP, now=T0)),
            ("success-closed", lambda: s.atomic_record_success("b", "closed", op_id=OP, now=T0)),
            ("success-open", lambda: s.atomic_record_success("b", "open", op_id=OP, now=T0))]


def _mismatches(client: redis.Redis, store_cls: type = RedisStore, records: list = RECORDS) -> list[str]:
    """Records and ops where the Lua reply (and the stored hash) differ from the kernel's."""
    out = []
    for name, over, _, _ in records:
        fields = _fields(over)
        for i, (op, _) in enumerate(_calls(None)):
            mem = InMemoryStore(clock=ManualClock(T0))
            lua = store_cls(client, key_prefix="fast", time_source="client", allow_unbounded_io=True)
            client.delete(lua.key("b"))
            if fields is not None:
                mem.raw_set("b", fields)
                client.hset(lua.key("b"), mapping=fields)
            want, got = _calls(mem)[i][1](), _calls(lua)[i][1]()
            stored = {k.decode(): v.decode("utf-8", "replace") for k, v in client.hgetall(lua.key("b")).items()}
            raw = {k: v if isinstance(v, str) else v.decode("utf-8", "replace")
                   for k, v in (mem.raw_get("b") or {}).items()}
            if want != got or stored != raw:
                out.append(f"{name}/{op}")
    return out


def _marked(text: str) -> tuple[str, str]:
    assert RETURN in text
    text = text.replace(RETURN, "if FAST then return 'FAST' end")
    return text, hashlib.sha1(text.encode()).hexdigest()


def test_fast_path_answers_canonical_closed_records_and_only_those(cbchaos_redis: redis.Redis) -> None:
    s = RedisStore(cbchaos_redis, key_prefix="fast", time_source="client", allow_unbounded_io=True)
    marked = {op: _marked(_SCRIPTS[op][0]) for op in ("gate", "record_success")}
    for text, _ in marked.values():
        cbchaos_redis.script_load(text)
    seen = []
    for name, over, gate_fast, success_fast in SHAPES:
        fields = _fields(over)
        cbchaos_redis.delete(s.key("b"))
        if fields is not None:
            cbchaos_redis.hset(s.key("b"), mapping=fields)
        for op, args, fast in (("gate", ["10.0"], gate_fast), ("record_success", ["", "1"], success_fast),
                               ("record_success", ["closed", "1"], success_fast),
                               ("record_success", ["open", "1"], False)):
            raw = cbchaos_redis.evalsha(marked[op][1], 1, s.key("b"), *s._argv(OP, T0, args))
            seen.append((name, op, args[0], raw == b"FAST", fast))
    assert [x for x in seen if x[3] != x[4]] == []


def test_fast_path_replies_equal_the_kernel(cbchaos_redis: redis.Redis) -> None:
    assert _mismatches(cbchaos_redis) == []


def _brief_mismatches(client: redis.Redis, scripts: dict[str, tuple[str, str]] = _SCRIPTS) -> list[str]:
    """Shapes and ops where the reply asked brief (the hot ops' last argument, ``'1'``) is not the whole reply with
    a non-empty ``recent_ops`` as ``~<entry count>`` on the fast path, or not the whole reply itself elsewhere (the
    prologue ignores the flag). Each call runs on the record as written (a success may reset a count)."""
    s = RedisStore(client, key_prefix="fast", time_source="client", allow_unbounded_io=True)
    out = []
    for name, over, gate_fast, success_fast in SHAPES:
        fields = _fields(over)
        for op, args, fast in (("gate", ["10.0"], gate_fast), ("record_success", ["", "1"], success_fast),
                               ("record_success", ["closed", "1"], success_fast),
                               ("record_success", ["open", "1"], False)):
            got = []
            for argv in (args, [*args, "1"]):
                client.delete(s.key("b"))
                if fields is not None:
                    client.hset(s.key("b"), mapping=fields)
                got.append(client.eval(scripts[op][0], 1, s.key("b"), *s._argv(OP, T0, argv)))
            whole = got[0].split(b"|")
            if fast and whole[9]:
                whole[9] = b"~%d" % len(whole[9].split(b" "))
            if got[1] != b"|".join(whole):
                out.append(f"{name}/{op}/{args[0]}")
    return out


def test_brief_replies_leave_out_only_the_entries(cbchaos_redis: redis.Redis) -> None:
    assert _brief_mismatches(cbchaos_redis) == []


@pytest.mark.parametrize("old, new, caught", [
    ("'~' .. n", "'~16'", {"one-op/gate/10.0", "one-op/record_success/"}),  # a wrong entry count
    ("if FAST_BRIEF and ops ~= ''", "if false", {"canonical/gate/10.0", "canonical/record_success/"}),  # never brief
    ("ARGV[4] == '1'", "false", {"canonical/gate/10.0"}),  # the gate's flag not read
])
def test_weakened_brief_reply_is_caught(cbchaos_redis: redis.Redis, old: str, new: str, caught: set[str]) -> None:
    scripts = dict(_SCRIPTS)
    for op in ("gate", "record_success"):
        t = _SCRIPTS[op][0].replace(old, new)
        scripts[op] = (t, hashlib.sha1(t.encode()).hexdigest())
    assert any(scripts[op] != _SCRIPTS[op] for op in ("gate", "record_success")), "mutant no longer applies"
    assert caught <= set(_brief_mismatches(cbchaos_redis, scripts))


def _weakened(doc: str, old: str, new: str = "") -> type:
    """A RedisStore whose gate and record_success fast paths have ``old`` replaced by ``new``."""
    scripts = {op: _SCRIPTS[op][0].replace(old, new) for op in ("gate", "record_success")}
    return type("Weakened", (RedisStore,), {"__doc__": doc, "scripts": {
        **_SCRIPTS, **{op: (t, hashlib.sha1(t.encode()).hexdigest()) for op, t in scripts.items()}}})


# one character strtoul takes that the fast path must exclude -> the shape that needs its exclusion
_BANNED = {"A": "upper-hex", "\\0": "nul-in-id", "\\n": "newline-in-id", "-": "signed-id", "x": "0x-id",
           "C": "upper-c-id"}


@pytest.mark.parametrize("mutant, caught", [
    (_weakened("no tiling or count check", "n > 16 or not trans[sub(ops, pos + 32, j - 1)]\n            or ", ""),
     {"17-ops/gate", "33-hex/gate", "adjacent/gate", "bad-state/gate"}),
    (_weakened("no check of the '=' after an id", "trans[sub(ops, pos + 32, j - 1)]",
               "trans['=' .. sub(ops, pos + 33, j - 1)]"),
     {"no-equals/gate", "no-equals/success"}),
    (_weakened("brief whether asked or not", "if FAST_BRIEF and ops ~= ''", "if ops ~= ''"),
     {"canonical/gate", "canonical/success"}),
    (_weakened("no hex check of an id", "\n            or not tonumber(sub(ops, pos, pos + 31), 16)"),
     {"non-hex/gate", "non-hex/success"}),
    (_weakened("no space check at an id's end", "or find(ops, ' =', 1, true)"), {"space-in-id/gate"}),
    (_weakened("no double-space check", "or find(ops, '  ', 1, true)"), {"space-led-id/gate"}),
    (_weakened("no leading-space check", "byte(ops) ~= 32 and "), {"space-led-first/gate"}),
    *[(_weakened(f"{c!r} not excluded", f"or find(ops, '{c}', 1, true)"), {f"{shape}/gate", f"{shape}/success"})
      for c, shape in _BANNED.items()]])
def test_weakened_fast_path_is_caught(cbchaos_redis: redis.Redis, mutant: type, caught: set[str]) -> None:
    for op in ("gate", "record_success"):
        assert mutant.scripts[op] != _SCRIPTS[op], "mutant no longer applies: update it"
    names = {c.split("/")[0] for c in caught}  # only the shapes it must get wrong: each costs ~30 ms
    assert caught <= set(_mismatches(cbchaos_redis, mutant, [s for s in SHAPES if s[0] in names]))
