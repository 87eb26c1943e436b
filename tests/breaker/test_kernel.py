"""Codec vectors on the Python and Lua paths, and kernel == Lua == WATCH fallback (differential)."""

from __future__ import annotations

import fakeredis
import pytest
from hypothesis import given, settings, strategies as st

from pytest_cbchaos.breaker import InMemoryStore, RedisStore, kernel, model
from pytest_cbchaos.faults.clock import ManualClock
from pytest_cbchaos.breaker.record import CODEC_VECTORS, DEFAULT, decode, encode, record_from_dict

T0 = 1_795_000_000.0


@pytest.mark.parametrize(("field", "raw", "expected"), CODEC_VECTORS, ids=[f"{f}={r!r}" for f, r, _ in CODEC_VECTORS])
def test_python_codec_vectors(field: str, raw: object, expected: object) -> None:
    rec, corrupt = decode({field: raw})
    if expected is None:
        assert corrupt == (field,)
        assert getattr(rec, field) == getattr(DEFAULT, field)
    else:
        assert corrupt == ()
        assert getattr(rec, field) == expected


@pytest.mark.parametrize("scripting", ["auto", "disabled"])
def test_lua_codec_vectors_match_python(scripting: str) -> None:
    c = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    s = RedisStore(c, allow_unbounded_io=True, time_source="client", scripting=scripting)
    for i, (field, raw, expected) in enumerate(CODEC_VECTORS):
        b = f"v{i}"
        c.hset(s.key(b), field, raw)
        py_rec, py_corrupt = decode(c.hgetall(s.key(b)))
        exp_state = "closed" if py_rec.state == "half_open" else "half_open"
        d = s.atomic_record_success(b, exp_state, now=T0)  # a no-op: the script only decodes
        assert d["_reason"] == "expected_mismatch"
        assert d["_corrupt"] == list(py_corrupt), (field, raw)
        want = kernel.normalize(py_rec).to_dict()
        got = {k: d[k] for k in want}
        assert got == want, (field, raw)


def test_rule_n_and_legacy_claim() -> None:
    s = InMemoryStore()
    # massgen worker: HALF_OPEN with the flag, no token -> legacy claim; first gate leases it and rejects
    s.raw_set("b", {"state": "half_open", "half_open_probe_active": "True", "open_until": "100.0"})
    r = s.try_transition_and_claim_probe("b", T0, 60, lease_seconds=5)
    assert not r.won and r.record["_reason"] == "legacy_probe_leased"
    assert not s.try_transition_and_claim_probe("b", T0 + 1, 60, lease_seconds=5).won
    r = s.try_transition_and_claim_probe("b", T0 + 6, 60, lease_seconds=5)
    assert r.won and r.label == "half_open_probe_reclaimed"
    # a massgen cycle rewrites open_until: our stale token no longer counts (anchor mismatch)
    s.raw_set("b", {"open_until": "200.0"})
    assert s.get_state("b")["probe_token"] == ""


def test_model_is_json_and_hashable() -> None:
    st0 = model.init()
    st1, out = model.apply(st0, "record_failure", {"now": T0, "op_id": "a" * 32, "failure_threshold": 1,
                                                    "recovery_timeout": 5})
    assert out == {"prev_state": "closed", "new_state": "open", "applied": True, "won": False}
    assert record_from_dict(st1.to_dict()) == st1 and hash(st1) == hash(record_from_dict(st1.to_dict()))
    st2, out = model.apply(st1, "gate", {"now": T0 + 6, "op_id": "b" * 32})
    assert out["won"] and st2.probe_token == "1:" + "b" * 32
    assert model.apply(st2, "get_state", None)[1] == {"state": "half_open", "failure_count": 1}
    assert model.output_matches(out, {"won": True}) and not model.output_matches(out, {"won": False})
    with pytest.raises(ValueError, match="unknown breaker op"):
        model.apply(st0, "nope", {})


_ops = st.lists(st.tuples(
    st.sampled_from(["gate", "failure", "success", "release", "renew", "force_open", "reset", "corrupt"]),
    st.floats(0, 200), st.integers(0, len(CODEC_VECTORS) - 1), st.sampled_from(["success", "failure", "abort", "free"])),
    min_size=1, max_size=14)


@settings(max_examples=40, deadline=None)
@given(_ops)
def test_differential_kernel_lua_fallback(ops: list) -> None:
    server = fakeredis.FakeServer()
    c = fakeredis.FakeRedis(server=server)
    big = 10**7  # TTL emulation is not under test here (records must not expire mid-sequence)
    stores = [InMemoryStore(probe_lease_seconds=7, ttl=big, clock=ManualClock(T0)),
              RedisStore(c, key_prefix="lua", allow_unbounded_io=True, time_source="client", probe_lease_seconds=7,
                         ttl=big),
              RedisStore(c, key_prefix="fb", allow_unbounded_io=True, time_source="client", probe_lease_seconds=7,
                         scripting="disabled", ttl=big)]
    tokens: list[str] = []
    now = T0
    for i, (op, dt, vec, outcome) in enumerate(ops):
        now += dt
        oid = f"{i:032x}"
        replies = []
        for s in stores:
            if op == "corrupt":
                f, raw, _ = CODEC_VECTORS[vec]
                if isinstance(s, InMemoryStore):
                    s.raw_set("b", {f: raw})
                else:
                    c.hset(s.key("b"), f, raw)
                replies.append(None)
            elif op == "gate":
                r = s.try_transition_and_claim_probe("b", now, 10, op_id=oid)
                replies.append((r.won, r.label, r.record))
            elif op == "failure":
                replies.append(s.atomic_record_failure("b", 3, 10, op_id=oid, now=now))
            elif op == "success":
                replies.append(s.atomic_record_success("b", op_id=oid, now=now))
            elif op == "release" and tokens:
                replies.append(s.release_probe("b", tokens[-1], outcome, recovery_timeout=10, op_id=oid, now=now))
            elif op == "renew" and tokens:
                replies.append(s.renew_probe("b", tokens[-1], now=now))
            elif op == "force_open":
                replies.append(s.force_open("b", dt / 2, op_id=oid, now=now))
            elif op == "reset":
                replies.append(s.reset("b", op_id=oid, now=now))
            else:
                replies.append(None)
        assert replies[0] == replies[1] == replies[2], (op, replies)
        if op == "gate" and replies[0][0]:
            tokens.append(replies[0][2]["probe_token"])
        raws = [stores[0].raw_get("b")] + [
            {k.decode(): v.decode("utf-8", "replace") for k, v in c.hgetall(s.key("b")).items()} for s in stores[1:]]
        if op != "corrupt":
            norm = [None if not r else {k: (v if isinstance(v, str) else v.decode("utf-8", "replace"))
                                        for k, v in r.items()} for r in raws]
            assert norm[0] == norm[1] == norm[2], (op, norm)
    c.close()


def test_encode_is_canonical_roundtrip() -> None:
    rec = DEFAULT.replace(state="open", failure_count=3, open_until=T0 + 0.1234567)
    assert decode(encode(rec))[0].open_until == float("%.6f" % (T0 + 0.1234567))


@pytest.mark.parametrize("scripting", ["auto", "disabled"])
def test_async_store_same_replies_as_sync(scripting: str) -> None:
    import asyncio

    from pytest_cbchaos.breaker import AsyncRedisStore

    async def main() -> None:
        server = fakeredis.FakeServer()
        a = AsyncRedisStore(fakeredis.FakeAsyncRedis(server=server), key_prefix="a", allow_unbounded_io=True,
                            time_source="client", scripting=scripting)
        s = RedisStore(fakeredis.FakeRedis(server=server), key_prefix="s", allow_unbounded_io=True,
                       time_source="client", scripting=scripting)
        for i in range(3):
            oid = f"{i:032x}"
            assert await a.atomic_record_failure("b", 2, 5, op_id=oid, now=T0) == \
                s.atomic_record_failure("b", 2, 5, op_id=oid, now=T0)
        ra = await a.try_transition_and_claim_probe("b", T0 + 6, 5, op_id="f" * 32)
        rs = s.try_transition_and_claim_probe("b", T0 + 6, 5, op_id="f" * 32)
        assert ra == rs and ra.won
        assert await a.renew_probe("b", ra.token, now=T0 + 7) is True
        assert (await a.release_probe("b", ra.token, "success", recovery_timeout=5, now=T0 + 8))["state"] == "closed"
        if scripting == "disabled":
            assert a.stats["pipelines_created"] == a.stats["pipelines_reset"] > 0
    asyncio.run(main())
