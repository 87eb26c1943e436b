"""``RedisStore`` / ``AsyncRedisStore`` (docs/breaker-design.md#redis-store): one EVALSHA per decision, WATCH fallback.

Each op is ``lua/head.lua`` (+ the closed-state fast path for the gate and success) + ``lua/prologue.lua`` +
``lua/<op>.lua`` (:func:`load_scripts`), run with EVALSHA on a locally computed SHA-1;
NOSCRIPT → ``SCRIPT LOAD`` and one resend; the settings travel as one ARGV string and a script answers
one ``|``-joined string (docs/breaker-design.md#one-round-trip-per-decision). When scripting is unavailable
(renamed EVAL/EVALSHA, fakeredis without lupa) and ``scripting="auto"``, ops run as WATCH/MULTI transactions
computed by :mod:`.kernel` (several round trips; pipelines always reset). ``scripting="disabled"`` forces the
fallback (tests of the no-Lua path); ``"required"`` raises ``StoreConfigError`` instead.

Both classes share the pure parts (argument building, reply parsing, error classes) in
``_Core``; only the I/O loops differ. Network errors are resent with the same op id
(exactly-once through ``recent_ops``); after the last failure: ``StoreIndeterminateError`` if a
request may have reached the server, else ``StoreUnavailableError``.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Callable, Mapping

import redis
import redis.exceptions as rex

from . import kernel
from .errors import (StoreConfigError, StoreContentionError, StoreDataError, StoreError,
                     StoreIndeterminateError, StoreUnavailableError)
from .plan import Plan, adrive, drive
from .record import FIELDS, STATES, Record, decode, encode
from .store import (ClaimResult, OpIds, check_backend, check_lease, check_now, check_open_for, check_outcome,
                    check_recovery, check_threshold, check_token, check_ttl, check_updates, reply,
                    resolve_op_id)

LUA_DIR = Path(__file__).parent / "lua"
OPS = ("gate", "record_failure", "record_success", "release_probe", "renew_probe", "force_open", "reset",
       "cas_state", "increment_failure")
TIME_SOURCES = ("server", "client")
SCRIPTING = ("auto", "required", "disabled")
_TRANSIENT = ("busy", "loading", "masterdown", "tryagain", "readonly")
# the script reply, in order (lua/prologue.lua ``reply``): the record's FIELDS, then the op's meta
REPLY_FIELDS = (*FIELDS, "_prev_state", "_new_state", "_applied", "_now", "_reason", "_label", "_won", "_duplicate",
                "_corrupt", "_value")
_NFIELDS = len(REPLY_FIELDS)


def load_scripts() -> dict[str, tuple[str, str]]:
    """op → (full script text, sha1): ``head.lua``, for the ops in ``lua/fast/`` that op's settings and the
    closed-state fast path (docs/breaker-design.md#closed-state-fast-path), ``prologue.lua``, ``<op>.lua``."""
    head, pro = (LUA_DIR / "head.lua").read_text(), (LUA_DIR / "prologue.lua").read_text()
    fast = (LUA_DIR / "fast_closed.lua").read_text()
    out = {}
    for op in OPS:
        parts = [head]
        if (LUA_DIR / "fast" / f"{op}.lua").exists():
            parts += [(LUA_DIR / "fast" / f"{op}.lua").read_text(), fast]
        text = "\n".join([*parts, pro, (LUA_DIR / f"{op}.lua").read_text()])
        out[op] = (text, hashlib.sha1(text.encode()).hexdigest())
    return out


_SCRIPTS = load_scripts()


class _ScriptingUnavailable(Exception):
    pass


class _Fatal(Exception):
    """Wraps a mapped StoreError so resend loops let it through."""


def _unknown_scripting(msg: str) -> bool:
    m = msg.lower()
    return ("unknown command" in m and any(c in m for c in ("eval", "evalsha", "script"))) or "lupa" in m \
        or "scripting" in m and "not" in m and "support" in m


def classify(exc: BaseException, op: str, backend: str) -> BaseException:
    """Map a redis-py exception to the fixed error classes of docs/breaker-design.md#error-classes (or a marker for
    the caller)."""
    msg = str(exc)
    m = msg.lower()
    if isinstance(exc, rex.NoScriptError):
        return exc
    if isinstance(exc, rex.ReadOnlyError) or m.startswith("readonly") or " readonly " in f" {m} ":
        return StoreUnavailableError(f"{op} for {backend!r}: replica is read-only ({msg})")
    if isinstance(exc, rex.NoPermissionError) or "noperm" in m:
        return StoreConfigError(f"{op} for {backend!r}: ACL denies the command ({msg})")
    if "wrongtype" in m:
        return StoreDataError(f"{op} for {backend!r}: key is not a hash ({msg})")
    if isinstance(exc, (rex.BusyLoadingError, rex.MasterDownError, rex.TryAgainError)) or \
            any(m.startswith(p) for p in _TRANSIENT):
        return StoreUnavailableError(f"{op} for {backend!r}: transient server state ({msg})")
    if isinstance(exc, rex.ResponseError) and _unknown_scripting(msg):
        return _ScriptingUnavailable(msg)
    if isinstance(exc, rex.ResponseError):
        return StoreError(f"script {op}.lua failed for {backend!r}: {msg}")
    return exc


# connection errors that say the command was not run: a Sentinel-managed connection turns a READONLY reply
# (the node was demoted) into a ConnectionError; no master known to the sentinels means nothing was sent
_NOT_SENT = ("connecting", "previous master is now a", "no master found")


def _maybe_sent(exc: BaseException) -> bool:
    m = str(exc).lower()
    return not (any(p in m for p in _NOT_SENT) or isinstance(exc, rex.MaxConnectionsError))


def post_claim(d: dict[str, Any], e: tuple[str, str, str]) -> ClaimResult:
    """The gate's answer from a parsed script reply."""
    return ClaimResult(e[1] == "1", d, e[0])


def post_dict(d: dict[str, Any], e: tuple[str, str, str]) -> dict[str, Any]:
    """An op's reply dict from a parsed script reply."""
    return d


class _Core:
    is_async = False
    scripts: dict[str, tuple[str, str]] = _SCRIPTS  # op -> (text, sha1); a mutant may swap one

    def __init__(self, redis_client: Any, ttl: int = 3600, key_prefix: str = "cbchaos:cb",
                 half_open_probe_ttl: int | None = None, *, probe_lease_seconds: float = 30.0,
                 time_source: str = "server", clock: Any = None, scripting: str = "auto",
                 fallback_max_attempts: int = 5, io_resends: int = 2, strict_probe_ownership: bool = True,
                 allow_unbounded_io: bool = False, before_command: Callable[[str, int], Any] | None = None,
                 wait_replicas: int = 0, wait_timeout_ms: int = 100) -> None:
        from pytest_cbchaos.faults.clock import SYSTEM_CLOCK

        if redis_client is None:
            raise ValueError(f"redis_client is required for {type(self).__name__}")
        self.ttl = check_ttl("ttl", ttl)
        self.half_open_probe_ttl = None if half_open_probe_ttl is None else check_ttl(
            "half_open_probe_ttl", half_open_probe_ttl)
        self.probe_ttl = max(self.ttl, self.half_open_probe_ttl or self.ttl)
        if not isinstance(key_prefix, str) or not key_prefix:
            raise ValueError(f"key_prefix must be a non-empty str, got {key_prefix!r}")
        self.key_prefix = key_prefix
        self.probe_lease_seconds = check_lease(probe_lease_seconds)
        if time_source not in TIME_SOURCES:
            raise ValueError(f"time_source must be one of {TIME_SOURCES}, got {time_source!r}")
        if scripting not in SCRIPTING:
            raise ValueError(f"scripting must be one of {SCRIPTING}, got {scripting!r}")
        if isinstance(fallback_max_attempts, bool) or not isinstance(fallback_max_attempts, int) \
                or fallback_max_attempts < 1:
            raise ValueError(f"fallback_max_attempts must be an int >= 1, got {fallback_max_attempts!r}")
        if isinstance(io_resends, bool) or not isinstance(io_resends, int) or io_resends < 0:
            raise ValueError(f"io_resends must be an int >= 0, got {io_resends!r}")
        for name, value, low in (("wait_replicas", wait_replicas, 0), ("wait_timeout_ms", wait_timeout_ms, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if wait_replicas and hasattr(redis_client, "nodes_manager"):  # RedisCluster: no one-connection pipeline
            raise ValueError("wait_replicas needs a client whose pipeline runs on one connection (WAIT counts that "
                             "connection's writes); a RedisCluster client routes WAIT to another node")
        self.wait_replicas, self.wait_timeout_ms = wait_replicas, wait_timeout_ms
        pool = getattr(redis_client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", {}) or {}
        if not allow_unbounded_io and pool is not None and not kwargs.get("socket_timeout"):
            raise ValueError("redis_client has no socket_timeout: a blackholed Redis would hang every gate; "
                             "pass a client with socket_timeout=... or allow_unbounded_io=True")
        self.client = redis_client
        self.time_source = time_source
        self.clock = clock or SYSTEM_CLOCK
        self.scripting = scripting
        self.fallback_max_attempts = fallback_max_attempts
        self.io_resends = io_resends
        self.strict_probe_ownership = bool(strict_probe_ownership)
        self.before_command = before_command
        self.using_fallback = scripting == "disabled"
        self._fallback_since = self.clock.monotonic() if self.using_fallback else 0.0
        self._ids = OpIds()
        #: (client, its hot-ops sender) shared by this store's breakers' hot ops (``redis_hot``)
        self._hot_wire: tuple[Any, Any] | None = None
        self._rng = random.Random()
        self.stats = {"pipelines_created": 0, "pipelines_reset": 0, "evalsha": 0, "script_load": 0,
                      "fallback_ops": 0, "wait_short": 0, "replica_replies": 0}
        self.events: list[tuple[str, str]] = []  # store-level events (scripting_fallback), newest last
        self._events_dropped = 0

    def key(self, backend: str) -> str:
        return f"{self.key_prefix}:{backend}"

    # ---- pure parts ----
    def _argv(self, op_id: str, now: float | None, args: list[Any]) -> list[Any]:
        """ARGV of lua/head.lua: the settings as one string (fewer arguments for the client to pack), the op id,
        the op's arguments; as bytes, which redis-py sends as they are (a str costs it a type walk and an encode)."""
        head = f"{self.time_source} {'0' if now is None else repr(float(now))} {self.ttl} {self.probe_ttl}"
        return [head.encode(), op_id.encode(), *[a.encode() if a.__class__ is str else a for a in args]]

    def _client_now(self, now: float | None) -> float | None:
        if self.time_source == "client":
            return self.clock.time() if now is None else now
        return None

    @staticmethod
    def parse_script_reply(op: str, raw: Any) -> tuple[dict[str, Any], tuple[str, str, str]]:
        """The script's one-string reply (``REPLY_FIELDS`` joined by ``|``) → (reply dict as InMemoryStore
        gives it, (label, won, value)). Split and converted in C: no per-field Python loop."""
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if not isinstance(raw, str):
            raise StoreError(f"script {op}.lua returned a malformed reply (not a string: {type(raw).__name__})")
        f = raw.split("|")
        if len(f) != _NFIELDS:
            raise StoreError(f"script {op}.lua returned a malformed reply ({len(f)} fields, expected {_NFIELDS})")
        st, fc, lft, ou, act, tok, plu, pa, gen, ops, prev, new, applied, now, reason, label, won, dup, cor, value = f
        try:
            d = {"state": st, "failure_count": int(fc), "last_failure_time": float(lft), "open_until": float(ou),
                 "half_open_probe_active": act == "True", "probe_token": tok, "probe_lease_until": float(plu),
                 "probe_anchor": float(pa), "probe_generation": int(gen), "recent_ops": ops,
                 "_prev_state": prev, "_prev_was_half_open": prev == "half_open", "_new_state": new,
                 "_applied": applied == "1", "_now": float(now), "_reason": reason, "_duplicate": dup == "1",
                 "_corrupt": cor.split(",") if cor else []}
        except ValueError as exc:
            raise StoreError(f"script {op}.lua returned a malformed reply ({exc})") from None
        return d, (label, won, value)

    def _kernel_fn(self, op: str, op_id: str, args: list[Any]) -> Callable[[Record, float], kernel.Outcome]:
        if op == "gate":
            return lambda r, t: kernel.gate(r, t, op_id, float(args[0]))
        if op == "record_failure":
            return lambda r, t: kernel.record_failure(r, t, op_id, int(args[0]), float(args[1]))
        if op == "record_success":
            return lambda r, t: kernel.record_success(r, t, op_id, args[0] or None, args[1] == "1")
        if op == "release_probe":
            return lambda r, t: kernel.release_probe(r, t, op_id, args[0], args[1], float(args[2]))
        if op == "renew_probe":
            return lambda r, t: kernel.renew_probe(r, t, args[0], float(args[1]))
        if op == "force_open":
            return lambda r, t: kernel.force_open(r, t, op_id, float(args[0]))
        if op == "reset":
            return lambda r, t: kernel.reset(r, t, op_id)
        if op == "increment_failure":
            return lambda r, t: kernel.increment_failure(r, t)
        if op == "cas_state":
            return self._cas_fn(args)
        raise ValueError(op)

    @staticmethod
    def _cas_args(expected: str, upd: Mapping[str, Any], expected_fields: Mapping[str, Any] | None) -> list[Any]:
        enc = encode(Record(**{k: v for k, v in upd.items()}))
        args: list[Any] = [expected, len(upd)]
        for k in upd:
            args += [k, enc[k]]
        ef = dict(expected_fields or {})
        args.append(len(ef))
        for k, v in ef.items():
            args += [k, "True" if v is True else "False" if v is False else str(v)]
        return args

    @staticmethod
    def _cas_fn(args: list[Any]) -> Callable[[Record, float], kernel.Outcome]:
        expected = args[0]
        n = int(args[1])
        pairs = args[2:2 + 2 * n]
        raw = {pairs[i]: pairs[i + 1] for i in range(0, len(pairs), 2)}
        upd_rec, _ = decode(raw)
        upd = {k: getattr(upd_rec, k) for k in raw}
        m = int(args[2 + 2 * n])
        ef_l = args[3 + 2 * n:3 + 2 * n + 2 * m]
        ef = {ef_l[i]: ef_l[i + 1] for i in range(0, len(ef_l), 2)}

        def fn(r: Record, t: float) -> kernel.Outcome:
            if expected == "":
                base = Record(probe_generation=r.probe_generation, recent_ops=r.recent_ops)
                new = kernel.normalize(base.replace(**upd))
                return kernel.Outcome(new, r.state, new.state, True, value=True)
            return kernel.cas_state(r, expected, upd, ef)
        return fn

    def _io_plan(self, op: str, backend: str, fn: Callable[[], Any], sleep: Callable[[float], Any],
                 reads: bool) -> Plan:
        """One store command with bounded resends on connection errors (:mod:`.plan`): a command that
        may have reached the server is indeterminate (unless it only reads), else unavailable."""
        sent = False
        for attempt in range(self.io_resends + 1):
            if self.before_command:
                self.before_command(op, attempt)
            try:
                return (yield fn)
            except (rex.ConnectionError, rex.TimeoutError) as exc:
                sent = sent or _maybe_sent(exc)
                last = exc
                if attempt < self.io_resends:
                    yield lambda: sleep(0.01 * (2 ** attempt) * self._rng.uniform(0.8, 1.2))
            except rex.RedisError as exc:
                mapped = classify(exc, op, backend)
                if isinstance(mapped, (StoreError, _ScriptingUnavailable, rex.NoScriptError)):
                    raise mapped from exc
                raise StoreError(f"{op} for {backend!r}: {exc}") from exc
        cls = StoreIndeterminateError if sent and not reads else StoreUnavailableError
        raise cls(f"{op} for {backend!r} failed after {self.io_resends + 1} attempts: {last}") from last

    def _script_plan(self, op: str, key: str, argv: list[Any]) -> Plan:
        """EVALSHA (and WAIT when asked); on NOSCRIPT, SCRIPT LOAD and one resend. Returns (reply, replicas acked)."""
        text, sha = self.scripts[op]
        self.stats["evalsha"] += 1
        try:
            return (yield from self._eval_plan(sha, key, argv))
        except rex.NoScriptError:
            self.stats["script_load"] += 1
            yield lambda: self.client.execute_command("SCRIPT", "LOAD", text)
            try:
                return (yield from self._eval_plan(sha, key, argv))
            except rex.NoScriptError as exc:
                raise StoreError(f"script {op}.lua: NOSCRIPT after SCRIPT LOAD") from exc

    def _eval_plan(self, sha: str, key: str, argv: list[Any]) -> Plan:
        """One EVALSHA; with ``wait_replicas``, ``WAIT`` on the same connection (a pipeline): WAIT counts the
        replicas that acknowledged the connection's own last write (docs/redis-topologies.md#durability-policy)."""
        if not self.wait_replicas:
            return (yield lambda: self.client.execute_command("EVALSHA", sha.encode(), b"1", key.encode(), *argv)), None

        def step() -> Any:
            pipe = self.client.pipeline(transaction=False)
            pipe.execute_command("EVALSHA", sha, 1, key, *argv)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            return pipe.execute(raise_on_error=False)

        raw, acked = yield step
        if isinstance(raw, BaseException):
            raise raw
        if isinstance(acked, rex.ResponseError) and "replica" in str(acked).lower():
            # a pooled connection outlived a demotion: the script ran read-only on stale data; drop it and resend
            self.stats["replica_replies"] += 1
            yield lambda: self.client.connection_pool.disconnect()
            raise rex.ConnectionError(f"The previous master is now a replica (WAIT refused: {acked})")
        return raw, acked

    def _with_wait(self, parsed: tuple[dict, tuple], acked: Any) -> tuple[dict, tuple]:
        """The reply reports how many replicas acknowledged the write (None: WAIT not run, or failed:
        ``_wait_error`` says why)."""
        d, e = parsed
        if self.wait_replicas:
            if isinstance(acked, BaseException):
                d["_wait_error"] = f"{type(acked).__name__}: {acked}"
                acked = None
            d["_replicas_acked"] = None if acked is None else int(acked)
            if acked is None or acked < self.wait_replicas:
                self.stats["wait_short"] += 1
        return d, e

    def _watch_plan(self, op: str, backend: str, key: str, kfn: Callable, cnow: float | None,
                    sleep: Callable[[float], Any]) -> Plan:
        """The WATCH/MULTI fallback, sans I/O (:mod:`.plan`): read the record and the server time under
        WATCH, apply the kernel, write it in MULTI when applied; a lost race retries with backoff."""
        self.stats["fallback_ops"] += 1
        for attempt in range(self.fallback_max_attempts):
            pipe = self.client.pipeline(transaction=True)
            self.stats["pipelines_created"] += 1
            try:
                yield lambda: pipe.watch(key)
                raw = yield lambda: pipe.hgetall(key)
                if cnow is None:
                    s, us = yield pipe.time
                    t = int(s) + int(us) / 1000000
                else:
                    t = cnow
                rec, corrupt = decode(raw)
                o = kfn(rec, t)
                if o.applied:
                    pipe.multi()  # buffered until execute, in both clients
                    pipe.hset(key, mapping=encode(o.record))
                    pipe.expire(key, kernel.ttl_for(o.record, t, self.ttl, self.probe_ttl))
                    yield pipe.execute
                return self._finish_kernel(o, t, corrupt)
            except rex.WatchError:
                if attempt + 1 < self.fallback_max_attempts:
                    yield lambda: sleep(0.001 * (2 ** attempt) * self._rng.uniform(0.8, 1.2))
            finally:
                yield pipe.reset
                self.stats["pipelines_reset"] += 1
        raise StoreContentionError(
            f"Failed to atomically {op} for '{backend}' after {self.fallback_max_attempts} retries")

    def _finish_kernel(self, o: kernel.Outcome, now: float, corrupt: tuple[str, ...]) -> tuple[dict, tuple]:
        v = o.value
        return reply(o, now, corrupt), (o.label if o.won else "", "1" if o.won else "0",
                                        "" if v is None else ("1" if v is True else "0" if v is False else str(v)))

    def _mark_fallback(self) -> None:
        if not self.using_fallback:
            self.using_fallback = True
            self._fallback_since = self.clock.monotonic()
            self._store_event("scripting_fallback", "")

    def _store_event(self, kind: str, detail: str) -> None:
        self.events.append((kind, detail))
        if len(self.events) > 256:  # bounded: at most one fallback event per 60 s re-probe anyway
            del self.events[:128]
            self._events_dropped += 128

    def store_events_since(self, seen: int) -> tuple[int, list[tuple[str, str]]]:
        """(total events so far, the events after the first ``seen``): breakers forward these to
        their listeners' ``on_store_event`` after each op (docs/breaker-design.md#events-listeners-and-metrics)."""
        total = self._events_dropped + len(self.events)
        if seen >= total:
            return total, []
        return total, self.events[max(0, seen - self._events_dropped):]

    def _try_scripts(self) -> bool:
        if self.scripting == "disabled":
            return False
        if self.using_fallback and self.clock.monotonic() - self._fallback_since >= 60.0:
            self.using_fallback = False  # re-probe scripting every 60 s
        return not self.using_fallback

    # ---- public API shared by both (I/O through self._run) ----
    def _prep(self, op: str, backend: str, args: list[Any], op_id: str | None, now: float | None,
              post: Callable[[dict, tuple], Any]) -> Any:
        check_backend(backend)
        oid = resolve_op_id(op_id, self._ids)
        return self._run(op, backend, oid, check_now(now), args, post)

    def atomic_record_failure(self, backend: str, failure_threshold: int, recovery_timeout: float, *,
                              op_id: str | None = None, now: float | None = None) -> Any:
        args = [check_threshold(failure_threshold), repr(check_recovery(recovery_timeout))]
        return self._prep("record_failure", backend, args, op_id, now, lambda d, e: d)

    def atomic_record_success(self, backend: str, expected_state: str | None = None, *,
                              op_id: str | None = None, now: float | None = None) -> Any:
        if expected_state and expected_state not in STATES:
            raise ValueError(f"expected_state must be one of {STATES} or None, got {expected_state!r}")
        args = [expected_state or "", "1" if self.strict_probe_ownership else "0"]
        return self._prep("record_success", backend, args, op_id, now, post_dict)

    def try_transition_and_claim_probe(self, backend: str, now: float | None = None,
                                       recovery_timeout: float | None = None, *, lease_seconds: float | None = None,
                                       op_id: str | None = None) -> Any:
        lease = self.probe_lease_seconds if lease_seconds is None else check_lease(lease_seconds)
        return self._prep("gate", backend, [repr(lease)], op_id, now, post_claim)

    def renew_probe(self, backend: str, probe_token: str, *, lease_seconds: float | None = None,
                    op_id: str | None = None, now: float | None = None) -> Any:
        check_token(probe_token)
        lease = self.probe_lease_seconds if lease_seconds is None else check_lease(lease_seconds)
        return self._prep("renew_probe", backend, [probe_token, repr(lease)], op_id, now,
                          lambda d, e: e[2] == "1")

    def release_probe(self, backend: str, probe_token: str, outcome: str, *, recovery_timeout: float,
                      op_id: str | None = None, now: float | None = None) -> Any:
        check_token(probe_token)
        check_outcome(outcome)
        args = [probe_token, outcome, repr(check_recovery(recovery_timeout))]
        return self._prep("release_probe", backend, args, op_id, now, lambda d, e: d)

    def force_open(self, backend: str, open_for_seconds: float, *, op_id: str | None = None,
                   now: float | None = None) -> Any:
        return self._prep("force_open", backend, [repr(check_open_for(open_for_seconds))], op_id, now,
                          lambda d, e: d)

    def reset(self, backend: str, *, op_id: str | None = None, now: float | None = None) -> Any:
        return self._prep("reset", backend, [], op_id, now, lambda d, e: d)

    def increment_failure(self, backend: str) -> Any:
        return self._prep("increment_failure", backend, [], None, None, lambda d, e: int(e[2]))

    def cas_state(self, backend: str, expected_state: str, updates: Mapping[str, Any], *,
                  expected_fields: Mapping[str, Any] | None = None) -> Any:
        if expected_state not in STATES:
            return self._const(False)
        upd = check_updates(updates)
        for k in expected_fields or {}:
            if k not in FIELDS or k == "recent_ops":
                raise ValueError(f"expected_fields: unknown field {k!r}")
        return self._prep("cas_state", backend, self._cas_args(expected_state, upd, expected_fields), None, None,
                          lambda d, e: e[2] == "1")

    def set_state(self, backend: str, state: Mapping[str, Any]) -> Any:
        upd = check_updates(state)
        return self._prep("cas_state", backend, self._cas_args("", upd, None), None, None, lambda d, e: None)


class RedisStore(_Core):
    """Synchronous store on ``redis.Redis``.

    ``pause_hook`` (docs/breaker-design.md#forced-interleavings): when set, the WATCH fallback calls it
    between its read (under WATCH) and its MULTI/EXEC, the one window a concurrent write must abort.
    The Lua path is one atomic script and has no window."""

    pause_hook: Any = None

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> "RedisStore":
        client = redis.Redis.from_url(url, socket_timeout=kw.pop("socket_timeout", 5.0))
        st = cls(client, **kw)
        st._owned = True
        return st

    def close(self) -> None:
        if getattr(self, "_owned", False):
            self.client.close()

    def _const(self, v: Any) -> Any:
        return v

    def hot_ops(self) -> Any:
        """``HotOps`` (docs/breaker-design.md#hot-path) for an exact ``RedisStore`` without ``before_command`` or
        ``wait_replicas``; None otherwise (a subclass may override what they skip)."""
        if type(self) is not RedisStore or self.before_command is not None or self.wait_replicas:
            return None
        from .redis_hot import RedisHotOps

        return RedisHotOps(self)

    def get_state(self, backend: str) -> dict[str, Any]:
        check_backend(backend)
        raw = self._io("get_state", backend, lambda: self.client.hgetall(self.key(backend)), reads=True)
        rec, corrupt = decode(raw)
        d = kernel.normalize(rec).to_dict()
        d["_corrupt"] = list(corrupt)
        return d

    def clear(self, backend: str) -> None:
        check_backend(backend)
        self._io("clear", backend, lambda: self.client.delete(self.key(backend)), reads=True)

    def _io(self, op: str, backend: str, fn: Callable[[], Any], reads: bool = False) -> Any:
        return drive(self._io_plan(op, backend, fn, self.clock.sleep, reads))

    def _run(self, op: str, backend: str, op_id: str, now: float | None, args: list[Any],
             post: Callable[[dict, tuple], Any], first: BaseException | None = None) -> Any:
        """The general path of one op; ``first``: the exception of its first EVALSHA, already sent (by the
        hot ops, docs/breaker-design.md#hot-path), which the plans take as their own first attempt's."""
        cnow = self._client_now(now)
        key = self.key(backend)
        if self._try_scripts():
            argv = self._argv(op_id, cnow, args)
            try:
                if first is None:
                    raw, acked = self._script_io(op, backend, key, argv)
                else:
                    raw, acked = self._script_io_after(op, backend, key, argv, first)
                return post(*self._with_wait(self.parse_script_reply(op, raw), acked))
            except _ScriptingUnavailable as exc:
                if self.scripting == "required":
                    raise StoreConfigError(f"{op} for {backend!r}: scripting required but unavailable ({exc})") from None
                self._mark_fallback()
        kfn = self._kernel_fn(op, op_id, args)
        return post(*self._with_wait(self._io(op, backend, lambda: self._watch(op, backend, key, kfn, cnow)), None))

    def _script_io(self, op: str, backend: str, key: str, argv: list[Any]) -> tuple[Any, Any]:
        """``_io`` of ``_script_plan`` with the first EVALSHA made in place: no plan objects when it succeeds; its
        exception goes to the same plans, as if they had sent it (same resends, same error classes)."""
        if self.wait_replicas or self.before_command is not None:
            return self._io(op, backend, lambda: drive(self._script_plan(op, key, argv)))
        try:
            raw = self.client.execute_command("EVALSHA", self.scripts[op][1].encode(), b"1", key.encode(), *argv)
        except BaseException as exc:
            return self._script_io_after(op, backend, key, argv, exc)
        self.stats["evalsha"] += 1
        return raw, None

    def _script_io_after(self, op: str, backend: str, key: str, argv: list[Any],
                         first: BaseException) -> tuple[Any, Any]:
        """The rest of ``_script_io`` after its first EVALSHA raised ``first``."""
        inner = self._script_plan(op, key, argv)
        next(inner)  # its EVALSHA step: the one just run
        replay = [lambda: drive(inner, (None, first))]

        def attempt() -> Any:  # the io plan's first attempt is the one above; later ones run afresh
            return (replay.pop() if replay else lambda: drive(self._script_plan(op, key, argv)))()
        return self._io(op, backend, attempt)

    def _watch(self, op: str, backend: str, key: str, kfn: Callable, cnow: float | None) -> tuple[dict, tuple]:
        if self.pause_hook is not None:
            decide = kfn

            def kfn(rec: Any, t: float) -> Any:  # read done, write not yet sent
                o = decide(rec, t)
                hook = self.pause_hook
                if hook is not None:
                    hook()
                return o
        return drive(self._watch_plan(op, backend, key, kfn, cnow, self.clock.sleep))


class AsyncRedisStore(_Core):
    """Asyncio twin on ``redis.asyncio.Redis``: same scripts, same replies; never blocks the loop."""

    is_async = True

    def __init__(self, redis_client: Any, *a: Any, **kw: Any) -> None:
        super().__init__(redis_client, *a, **kw)
        import asyncio

        self._alock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> "AsyncRedisStore":
        import redis.asyncio as aredis

        client = aredis.Redis.from_url(url, socket_timeout=kw.pop("socket_timeout", 5.0))
        st = cls(client, **kw)
        st._owned = True
        return st

    async def aclose(self) -> None:
        if getattr(self, "_owned", False):
            await self.client.aclose()

    async def _const(self, v: Any) -> Any:
        return v

    async def get_state(self, backend: str) -> dict[str, Any]:
        check_backend(backend)
        raw = await self._io("get_state", backend, lambda: self.client.hgetall(self.key(backend)), reads=True)
        rec, corrupt = decode(raw)
        d = kernel.normalize(rec).to_dict()
        d["_corrupt"] = list(corrupt)
        return d

    async def clear(self, backend: str) -> None:
        check_backend(backend)
        await self._io("clear", backend, lambda: self.client.delete(self.key(backend)), reads=True)

    async def _io(self, op: str, backend: str, fn: Callable[[], Any], reads: bool = False) -> Any:
        return await adrive(self._io_plan(op, backend, fn, self.clock.asleep, reads))

    async def _run(self, op: str, backend: str, op_id: str, now: float | None, args: list[Any],
                   post: Callable[[dict, tuple], Any]) -> Any:
        cnow = self._client_now(now)
        key = self.key(backend)
        if self._try_scripts():
            argv = self._argv(op_id, cnow, args)
            try:
                raw, acked = await self._io(op, backend, lambda: adrive(self._script_plan(op, key, argv)))
                return post(*self._with_wait(self.parse_script_reply(op, raw), acked))
            except _ScriptingUnavailable as exc:
                if self.scripting == "required":
                    raise StoreConfigError(f"{op} for {backend!r}: scripting required but unavailable ({exc})") from None
                self._mark_fallback()
        kfn = self._kernel_fn(op, op_id, args)
        async with self._alock:
            res = await self._io(op, backend, lambda: self._watch(op, backend, key, kfn, cnow))
        return post(*self._with_wait(res, None))

    async def _watch(self, op: str, backend: str, key: str, kfn: Callable, cnow: float | None) -> tuple[dict, tuple]:
        return await adrive(self._watch_plan(op, backend, key, kfn, cnow, self.clock.asleep))
