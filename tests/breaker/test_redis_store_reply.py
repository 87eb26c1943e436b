"""The Redis store's wire cost per decision (docs/breaker-design.md#one-round-trip-per-decision): one short
string per script reply, few arguments per EVALSHA, a bounded Python call count per ``call(noop)``."""

from __future__ import annotations

import sys
import uuid
from typing import Any

import pytest
import redis
from redis._parsers import _RESP2Parser

from pytest_cbchaos.breaker import CircuitBreaker, RedisStore, StoreError
from pytest_cbchaos.breaker.record import q6
from pytest_cbchaos.breaker.redis_store import _NFIELDS, REPLY_FIELDS

pytestmark = pytest.mark.requires_real_redis

# Python-level calls (ours and redis-py's) per CircuitBreaker.call(noop), closed state: a 41-element reply
# parsed field by field cost ~1,900 with redis-py's pure-Python parser; the one-string reply ~600; the hot ops
# through execute_command 553 / 418 (hiredis); pre-packed on the thread's connection 134 / 63
CALL_BUDGET = {"pure": 200, "hiredis": 120}


def _client(proc: Any, parser: str) -> redis.Redis:
    kw: dict[str, Any] = {"host": proc.host, "port": proc.port, "password": proc.password, "socket_timeout": 5}
    if parser == "pure":
        kw["parser_class"] = _RESP2Parser  # redis-py switches it to its RESP3 twin when the protocol is 3
    return redis.Redis(connection_pool=redis.ConnectionPool(**kw))


def _store(client: redis.Redis) -> RedisStore:
    return RedisStore(client, key_prefix=f"t{uuid.uuid4().hex[:8]}")


def test_script_reply_is_one_string_with_exact_record(cbchaos_redis: redis.Redis) -> None:
    s = _store(cbchaos_redis)
    s.set_state("b", {"state": "open", "failure_count": 3, "last_failure_time": 1733580000.123456,
                      "open_until": 1.5})
    s.atomic_record_failure("b", 5, 60)  # a recent_ops entry, open_until pushed to now + 60
    s.force_open("b", 0.000001)  # no-op merge
    ops = {"gate": ["30.0"], "record_success": ["", "1"], "record_failure": ["5", "60.0"], "reset": []}
    for op, args in ops.items():
        cbchaos_redis.script_load(s.scripts[op][0])
        raw = cbchaos_redis.execute_command("EVALSHA", s.scripts[op][1], 1, s.key("b"),
                                            *s._argv(uuid.uuid4().hex, None, args))
        assert isinstance(raw, bytes) and raw.count(b"|") == _NFIELDS - 1, (op, raw)
        d, (label, won, value) = s.parse_script_reply(op, raw)
        assert set(d) >= set(REPLY_FIELDS) - {"_label", "_won", "_value"}, op
        assert d["recent_ops"] and isinstance(d["_corrupt"], list) and isinstance(d["_now"], float), op
        if op == "gate":
            assert d["last_failure_time"] == q6(d["last_failure_time"]) and d["failure_count"] == 4
    st = s.get_state("b")
    d = s.atomic_record_success("b")  # the reply's record is the stored one, value for value
    assert {k: d[k] for k in st if k != "_corrupt"} == {k: v for k, v in st.items() if k != "_corrupt"}


@pytest.mark.parametrize("raw, match", [
    ([b"closed", b"0"], "not a string"),
    (b"closed|0|0", f"3 fields, expected {_NFIELDS}"),
    ("|".join(["x"] * _NFIELDS).encode(), "invalid literal for int"),
])
def test_malformed_reply_is_a_store_error_naming_the_script(raw: Any, match: str) -> None:
    with pytest.raises(StoreError, match=rf"script gate\.lua returned a malformed reply.*{match}"):
        RedisStore.parse_script_reply("gate", raw)


def test_evalsha_arguments_per_decision(cbchaos_redis: redis.Redis) -> None:
    sent: list[tuple] = []
    s = _store(cbchaos_redis)
    real = cbchaos_redis.execute_command

    def spy(*args: Any, **kw: Any) -> Any:
        sent.append(args)
        return real(*args, **kw)

    s.try_transition_and_claim_probe("b")  # loads the scripts
    s.atomic_record_success("b")
    pool = cbchaos_redis.connection_pool
    s.client = type("Spy", (), {"execute_command": staticmethod(spy), "connection_pool": pool})()
    s.try_transition_and_claim_probe("b")
    s.atomic_record_success("b")
    # EVALSHA sha numkeys key settings op-id + the op's own: lease; expected state, strict
    assert [len(a) for a in sent if a[0] == "EVALSHA"] == [7, 8], sent


@pytest.mark.parametrize("parser", ["pure", "hiredis"])
def test_python_calls_per_decision_bounded(parser: str, cbchaos_redis_proc: Any) -> None:
    if parser == "hiredis":
        pytest.importorskip("hiredis")
    client = _client(cbchaos_redis_proc, parser)
    cb = CircuitBreaker(f"calls-{uuid.uuid4().hex[:6]}", store=_store(client))
    cb.call(lambda: None)  # connection, HELLO, script load
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(count)
    try:
        cb.call(lambda: None)
    finally:
        sys.setprofile(None)
    client.close()
    assert calls <= CALL_BUDGET[parser], f"{calls} Python calls per decision ({parser} parser)"
