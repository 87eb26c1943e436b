"""Codec vectors on the Python and Lua paths, and kernel == Lua == WATCH fallback (differential): random
programs, and the cell walk reaching every transition cell (docs/breaker-design.md#transition-cells)."""

from __future__ import annotations

import fakeredis
import pytest
from hypothesis import given, settings, strategies as st

from pytest_cbchaos.breaker import InMemoryStore, RedisStore, kernel, model
from pytest_cbchaos.faults.clock import ManualClock
from pytest_cbchaos.breaker.cells import CellCoverage, cell_of
from pytest_cbchaos.breaker.record import CODEC_VECTORS, DEFAULT, Record, decode, encode, record_from_dict
from pytest_cbchaos.stateful.store_cells import SCRIPTS
from pytest_cbchaos.stateful.store_commands import FAKE_TOKEN
from pytest_cbchaos.testing.breaker_mutants import KeepCountReleaseLuaStore, KeepCountReleaseStore

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


def _three(c: fakeredis.FakeRedis, kernel_cls: type = InMemoryStore, lua_cls: type = RedisStore) -> list:
    return [kernel_cls(probe_lease_seconds=7, clock=ManualClock(T0)),
            lua_cls(c, key_prefix="lua", allow_unbounded_io=True, time_source="client", probe_lease_seconds=7),
            RedisStore(c, key_prefix="fb", allow_unbounded_io=True, time_source="client", probe_lease_seconds=7,
                       scripting="disabled")]


def _walk_step(s: object, step: tuple, now: float, oid: str, tokens: list[str]) -> tuple[str | None, dict, object]:
    """One cell-walk step on store ``s``: (model op, history input, reply); ``adv`` and ``resend`` are
    handled by the caller."""
    kind = step[0]
    tok = {"last": tokens[-1] if tokens else FAKE_TOKEN, "first": tokens[0] if tokens else FAKE_TOKEN,
           "fake": FAKE_TOKEN}
    if kind == "fail":
        inp = {"failure_threshold": step[1], "recovery_timeout": step[2]}
        return "record_failure", inp, s.atomic_record_failure("b", step[1], step[2], op_id=oid, now=now)
    if kind == "gate":
        r = s.try_transition_and_claim_probe("b", now, 10, op_id=oid, lease_seconds=step[1])
        return "gate", {"lease_seconds": step[1]}, (r.won, r.label, r.record)
    if kind == "release":
        t = tok[step[1]]
        return "release_probe", {"token": t, "outcome": step[2], "recovery_timeout": 1.0}, \
            s.release_probe("b", t, step[2], recovery_timeout=1.0, op_id=oid, now=now)
    if kind == "renew":
        t = tok[step[1]]
        return "renew_probe", {"token": t, "lease_seconds": step[2]}, \
            s.renew_probe("b", t, lease_seconds=step[2], now=now)
    if kind == "success":
        return "record_success", {"expected_state": step[1]}, \
            s.atomic_record_success("b", expected_state=step[1], op_id=oid, now=now)
    if kind == "force":
        return "force_open", {"open_for_seconds": step[1]}, s.force_open("b", step[1], op_id=oid, now=now)
    if kind == "reset":
        return "reset", {}, s.reset("b", op_id=oid, now=now)
    raise ValueError(f"unknown step {step!r}")


def differential_cell_walk(kernel_cls: type = InMemoryStore, lua_cls: type = RedisStore) -> CellCoverage:
    """Every cell script on the kernel, Lua and the WATCH fallback: same replies, same stored hashes;
    the cells are counted on the model record before each op."""
    cov = CellCoverage("differential")
    for cell, script in SCRIPTS.items():
        c = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        stores = _three(c, kernel_cls, lua_cls)
        rec, now, tokens, last = Record(), T0, [], None
        for i, step in enumerate(script):
            if step[0] == "adv":
                now += step[1]
                continue
            oid = f"{i:032x}"
            if step[0] == "resend":
                step, oid = last
            outs = [_walk_step(s, step, now, oid, tokens) for s in stores]
            op, inp, _ = outs[0]
            full = {**inp, "now": now, "op_id": oid}
            cov.add(cell_of(op, rec, full))
            rec, _ = model.apply(rec, op, full)
            replies = [o[2] for o in outs]
            assert replies[0] == replies[1] == replies[2], (cell, step, replies)
            raws = [stores[0].raw_get("b") or None] + [
                {k.decode(): v.decode("utf-8", "replace") for k, v in c.hgetall(s.key("b")).items()} or None
                for s in stores[1:]]
            assert raws[0] == raws[1] == raws[2], (cell, step, raws)
            if op == "gate" and replies[0][0]:
                tokens.append(replies[0][2]["probe_token"])
            last = (step, oid)
        c.close()
    return cov


def test_differential_reaches_every_cell() -> None:
    cov = differential_cell_walk()
    print("\n" + cov.table())
    assert not cov.missing(), f"cells not reached: {cov.missing()}"


@pytest.mark.parametrize("path", ["kernel", "lua"])
def test_differential_walk_catches_release_keeping_the_count(path: str) -> None:
    kw = {"kernel_cls": KeepCountReleaseStore} if path == "kernel" else {"lua_cls": KeepCountReleaseLuaStore}
    with pytest.raises(AssertionError, match="release_probe:owner-success"):
        differential_cell_walk(**kw)
