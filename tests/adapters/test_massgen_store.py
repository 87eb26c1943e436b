"""massgen 0.1.97's Redis store under the kit (docs/adapters.md#massgen).

Three parts: (1) each defect class the kit reports is reproduced by a direct test against massgen's
own store (no kit check involved), so no finding is a false positive; (2) the conformance suite and
a survey of the store machine against it report the classes with minimal examples; (3) the kit's
parts that massgen cannot express are n/a with a reason, not errors. Skips when massgen is absent
(``pip install --no-deps 'massgen==0.1.97'``; ``scripts/setup`` installs it).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pytest_cbchaos.adapters import massgen_store as mg

pytestmark = pytest.mark.skipif(mg.unavailable_reason() is not None, reason=str(mg.unavailable_reason()))

T0 = 1_800_000_000.0
R = 60.0
_names = itertools.count()


@pytest.fixture
def prefix(cbchaos_redis_admin: Any) -> Any:
    p = f"cbchaos-mg{next(_names)}"
    yield p
    for k in cbchaos_redis_admin.scan_iter(f"{p}:*"):
        cbchaos_redis_admin.delete(k)


@pytest.fixture
def adapter(cbchaos_redis_admin: Any, prefix: str) -> mg.MassgenStoreAdapter:
    return mg.massgen_store(cbchaos_redis_admin, key_prefix=prefix)


def _trip(a: mg.MassgenStoreAdapter, b: str, now: float = T0) -> None:
    for _ in range(3):
        a.atomic_record_failure(b, 3, R, now=now)


# ---- (1) each class reproduced directly on massgen's store ---------------------------------------

def test_direct_non_owner_success_closes_half_open(adapter: mg.MassgenStoreAdapter) -> None:
    _trip(adapter, "b")
    won, _, _ = adapter.store.try_transition_and_claim_probe("b", T0 + R + 1, R)
    assert won
    adapter.store.atomic_record_success("b")  # someone else's call, admitted earlier, succeeds
    assert adapter.store.get_state("b")["state"] == "closed"


def test_direct_abandoned_probe_is_never_reclaimed(adapter: mg.MassgenStoreAdapter) -> None:
    _trip(adapter, "b")
    assert adapter.store.try_transition_and_claim_probe("b", T0 + R + 1, R)[0]
    # the owner died; a day later nobody can probe
    assert adapter.store.try_transition_and_claim_probe("b", T0 + R + 86_400, R)[0] is False


def test_direct_non_extending_force_open_writes(adapter: mg.MassgenStoreAdapter) -> None:
    adapter.force_open("b", 600, now=T0)
    before = adapter.store.get_state("b")
    adapter.force_open("b", 10, now=T0 + 1)  # massgen's breaker: read, max-merge, cas_state
    after = adapter.store.get_state("b")
    assert after["open_until"] == before["open_until"]
    assert after["last_failure_time"] > before["last_failure_time"]


def test_direct_ttl_zero_is_accepted_and_deletes_the_record(cbchaos_redis_admin: Any, prefix: str) -> None:
    store = mg.load_cb_store().RedisStore(cbchaos_redis_admin, ttl=0, key_prefix=prefix)
    for _ in range(5):
        store.atomic_record_failure("b", 3, R)
    assert store.get_state("b")["state"] == "closed"  # EXPIRE key 0 deleted the OPEN record


def test_direct_flag_spelling_read_two_ways(cbchaos_redis_admin: Any, adapter: mg.MassgenStoreAdapter) -> None:
    _trip(adapter, "b")
    assert adapter.store.try_transition_and_claim_probe("b", T0 + R + 1, R)[0]
    cbchaos_redis_admin.hset(adapter.key("b"), "half_open_probe_active", "false")
    assert adapter.store.get_state("b")["half_open_probe_active"] is False  # Python: free
    assert adapter.store.try_transition_and_claim_probe("b", T0 + R + 2, R)[0] is False  # Lua: busy


def test_direct_corrupt_field_crashes(cbchaos_redis_admin: Any, adapter: mg.MassgenStoreAdapter) -> None:
    adapter.atomic_record_failure("b", 100, R, now=T0)
    cbchaos_redis_admin.hset(adapter.key("b"), "failure_count", "x")
    with pytest.raises(ValueError):
        adapter.store.get_state("b")


# ---- (2) the kit finds them: store machine survey + conformance ---------------------------------

def test_survey_store_machine(cbchaos_redis_admin: Any, prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_cbchaos.stateful import store_machine
    from pytest_cbchaos.stateful.survey import survey

    machine = store_machine(lambda: mg.massgen_store(cbchaos_redis_admin, key_prefix=prefix), name="MassgenMachine")
    rep = survey(machine)
    with capsys.disabled():
        print("\n" + rep.format())
    assert not rep.exhausted
    assert {"non-owner-closed", "abandoned-probe-wedge", "noop-wrote"} <= set(rep.classes)
    for f in rep.findings:
        assert f.example and f.klass.message in f.format()
