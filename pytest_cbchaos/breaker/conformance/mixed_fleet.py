"""Mixed fleet (docs/breaker-design.md#mixed-fleet): a minimal massgen-layout writer next to our store on one key, and
a report of which invariants such a fleet keeps and which it violates.

``MassgenWriter`` mimics massgen PR #1061's Redis store as far as the record goes: Lua scripts that
write only the five massgen fields, ``True``/``False`` flags, Lua ``%.14g`` floats, the caller's clock,
a tokenless probe flag, any success closing HALF_OPEN and no lease. ``mixed_fleet_report`` runs short
deterministic interleavings and returns ``{name: {"held": bool, "expected": bool, "detail": str}}``;
``expected`` is what a mixed fleet does by design (docs/breaker-design.md#massgen-compatibility items 2-4).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

from pytest_cbchaos.waiting import wait_until

_FIVE = ("state", "failure_count", "last_failure_time", "open_until", "half_open_probe_active")

_READ = """
local h = redis.call('HGETALL', KEYS[1])
local r = {}
for i = 1, #h, 2 do r[h[i]] = h[i + 1] end
local state = r['state'] or 'closed'
local count = tonumber(r['failure_count'] or '0') or 0
local open_until = tonumber(r['open_until'] or '0') or 0
local last = tonumber(r['last_failure_time'] or '0') or 0
local flag = r['half_open_probe_active'] == 'True'
local function put(st, c, l, ou, fl)
  redis.call('HSET', KEYS[1], 'state', st, 'failure_count', tostring(c),
             'last_failure_time', string.format('%.14g', l), 'open_until', string.format('%.14g', ou),
             'half_open_probe_active', fl and 'True' or 'False')
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
end
"""

_FAILURE = _READ + """
local now, t, recovery_timeout = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
count = count + 1
if state == 'half_open' or state == 'open' or count >= t then
  put('open', count, now, math.max(open_until, now + recovery_timeout), false)
  return 'open'
end
put(state, count, now, open_until, flag)
return state
"""

_GATE = _READ + """
local now = tonumber(ARGV[2])
if state == 'closed' then return 'admitted' end
if state == 'open' then
  if now < open_until then return 'blocked' end
  put('half_open', count, last, open_until, true)
  return 'open->half_open'
end
if flag then return 'blocked' end
put('half_open', count, last, open_until, true)
return 'half_open_probe_claimed'
"""

_SUCCESS = _READ + """
if state == 'open' then return 'guard_open' end
put('closed', 0, last, open_until, false)
return 'closed'
"""


class MassgenWriter:
    """A massgen-layout worker on the same key (five fields only; client time; no token, no lease)."""

    def __init__(self, client: Any, key_prefix: str, ttl: int = 3600, clock: Callable[[], float] = time.time) -> None:
        self.client, self.key_prefix, self.ttl, self.clock = client, key_prefix, ttl, clock
        self._failure = client.register_script(_FAILURE)
        self._gate = client.register_script(_GATE)
        self._success = client.register_script(_SUCCESS)

    def key(self, backend: str) -> str:
        return f"{self.key_prefix}:{backend}"

    @staticmethod
    def _s(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    def record_failure(self, backend: str, failure_threshold: int, recovery_timeout: float) -> str:
        return self._s(self._failure(keys=[self.key(backend)], args=[self.ttl, repr(self.clock()), failure_threshold,
                                                                      repr(recovery_timeout)]))

    def gate(self, backend: str) -> str:
        return self._s(self._gate(keys=[self.key(backend)], args=[self.ttl, repr(self.clock())]))

    def record_success(self, backend: str) -> str:
        return self._s(self._success(keys=[self.key(backend)], args=[self.ttl]))

    def read(self, backend: str) -> dict[str, Any]:
        """massgen's reader: the five fields parsed its way (``float()``, ``== "True"``); raises if it can't."""
        raw = {self._s(k): self._s(v) for k, v in self.client.hgetall(self.key(backend)).items()}
        flag = raw.get("half_open_probe_active", "False")
        if flag not in ("True", "False") or raw.get("state", "closed") not in ("closed", "open", "half_open"):
            raise ValueError(f"massgen reader cannot parse {raw}")
        return {"state": raw.get("state", "closed"), "failure_count": int(raw.get("failure_count", "0")),
                "last_failure_time": float(raw.get("last_failure_time", "0")),
                "open_until": float(raw.get("open_until", "0")), "half_open_probe_active": flag == "True"}


def _wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_until(cond, timeout, f"mixed fleet: {what}")


def mixed_fleet_report(client: Any, store_cls: Any = None, *, cooldown: float = 0.2, lease: float = 0.5,
                       timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """Run the mixed-fleet interleavings (docs/breaker-design.md#mixed-fleet) on ``client`` and report each invariant
    (held / expected / detail)."""
    from pytest_cbchaos.breaker.redis_store import RedisStore

    prefix = f"mf{uuid.uuid4().hex[:8]}"
    ours = (store_cls or RedisStore)(client, key_prefix=prefix, probe_lease_seconds=lease)
    mg = MassgenWriter(client, prefix)
    rep: dict[str, dict[str, Any]] = {}

    def put(name: str, held: bool, expected: bool, detail: str) -> None:
        rep[name] = {"held": bool(held), "expected": expected, "detail": detail}

    # rule N: our claim, then a whole massgen cycle (failure -> OPEN -> cooldown -> massgen claim)
    b = "ruleN"
    ours.force_open(b, 0)
    mine = ours.try_transition_and_claim_probe(b)
    assert mine.won, f"setup: our claim failed: {mine}"
    mg.record_failure(b, 1, cooldown)
    _wait(lambda: mg.gate(b) == "open->half_open", timeout, "the massgen claim")
    r = ours.release_probe(b, mine.token, "success", recovery_timeout=60)
    st = ours.get_state(b)
    put("rule_N", not r["_applied"] and st["state"] == "half_open" and st["probe_token"] == "",
        True, f"stale token after a massgen cycle: applied={r['_applied']} reason={r['_reason']} state={st['state']}")

    # legacy claim (a massgen probe, no token): leased first, reclaimed only after the lease
    b = "legacy"
    mg.record_failure(b, 1, cooldown)
    _wait(lambda: mg.gate(b) == "open->half_open", timeout, "the massgen claim")
    g1 = ours.try_transition_and_claim_probe(b)
    g2 = ours.try_transition_and_claim_probe(b)
    t1 = time.monotonic()
    g3 = g1 if g1.won else _wait(lambda: (lambda g: g if g.won else None)(ours.try_transition_and_claim_probe(b)),
                                 timeout, "our reclaim of the legacy claim")
    waited = time.monotonic() - t1
    put("legacy_claim_leasing", not g1.won and g1.record["_reason"] == "legacy_probe_leased" and not g2.won
        and g2.record["_reason"] == "probe_busy" and g3.label == "half_open_probe_reclaimed"
        and waited >= lease * 0.5, True,
        f"first gate {g1.record['_reason']!r}, second {g2.record['_reason']!r}, reclaimed as {g3.label!r} "
        f"after {waited:.2f}s (lease {lease}s)")

    # CB-3 across the fleet: while we hold the probe a massgen gate is rejected
    put("CB-3", mg.gate(b) == "blocked", True, "massgen gate while our probe is held")

    # CB-18: a massgen (tokenless) success closes our HALF_OPEN probe -- massgen semantics
    mg.record_success(b)
    st = ours.get_state(b)
    put("CB-18", st["state"] == "half_open", False, f"after a massgen success our probe's record is {st['state']}")

    # CB-17: our owner's late resolution after that close changes nothing
    r = ours.release_probe(b, g3.token, "failure", recovery_timeout=60)
    put("CB-17", not r["_applied"], True, f"stale owner failure: applied={r['_applied']} reason={r['_reason']}")

    # CB-24 for massgen workers: an abandoned massgen claim is never reclaimed by massgen gates (no lease)
    b = "lease"
    mg.record_failure(b, 1, cooldown)
    _wait(lambda: mg.gate(b) == "open->half_open", timeout, "the massgen claim")
    t0 = time.monotonic()
    _wait(lambda: time.monotonic() - t0 > lease * 1.5, timeout, "the lease to pass")
    put("CB-24 (massgen workers)", mg.gate(b) != "blocked", False,
        f"massgen gate {1.5 * lease:.2f}s after an abandoned massgen claim")

    # CB-16: a massgen failure never shortens our force_open
    b = "mono"
    before = ours.force_open(b, 600)["open_until"]
    mg.record_failure(b, 1, cooldown)
    after = ours.get_state(b)["open_until"]
    put("CB-16", after >= before - 1e-3, True, f"open_until {before} -> {after} (massgen keeps ~100 us)")

    # massgen readers parse every record our writers leave
    try:
        parsed = [mg.read(x) for x in ("ruleN", "legacy", "lease", "mono")]
        put("massgen_reader_compat", True, True, f"{len(parsed)} records parsed")
    except (ValueError, KeyError) as exc:
        put("massgen_reader_compat", False, True, str(exc))
    for x in ("ruleN", "legacy", "lease", "mono"):
        client.delete(f"{prefix}:{x}")
    return rep


def violated(report: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(k for k, v in report.items() if not v["held"])
