"""``RedisStore``'s ``HotOps`` (docs/breaker-design.md#redis-hot-ops): the gate's and the success's one EVALSHA,
written as pre-packed bytes on a pooled connection (:mod:`.redis_wire`) and its reply read; the closed-state fast
path's plain no-op reply answers ``(view, now)``. The hot EVALSHA asks for that reply brief (one argument more than
the general path's): ``recent_ops`` comes back as ``~<entry count>``, not the entries, which the breaker never reads
from a no-op (only whether there are any); ``get_state`` reads them. Any other reply is decoded by the general
path's own code, and any exception goes to the general path as its first attempt's (same op id, same resends,
same error classes), so both paths decide alike.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import StoreError
from .redis_store import RedisStore, post_claim, post_dict
from .redis_wire import Packet, wire
from .store import ClaimResult, check_backend, check_lease

# the script reply's meta fields of a no-op on a CLOSED record (lua/fast_closed.lua, lua/prologue.lua ``reply``):
# _prev_state, _new_state, _applied, then _now, then empty _reason/_label, _won 0, _duplicate 0, empty _corrupt/_value
_META = b"|closed|closed|0|"
_TAIL = b"|||0|0||"
_NTAIL = len(_TAIL)
_RECORD_BARS = 9  # the '|' between the record's 10 fields
_BRIEF = b"1"  # the hot EVALSHA's last argument: the fast path's no-op reply brief (lua/fast/<op>.lua FAST_BRIEF)
_OMITTED = {b"~%d" % k: k for k in range(1, 17)}  # a brief reply's recent_ops: the record holds k entries (1-16)

View = tuple[bytes, dict[str, Any]]  # (the reply's record fields as sent, their reply template)


class RedisHotOps:
    """``hot_gate``/``hot_success`` of one ``RedisStore``; a view is the reply's record part with its parsed
    template, kept per backend so an unchanged record gives the same view object (the breaker skips noting it)."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.op_ids = store._ids
        self._client = store.client
        self._send = self._wire()  # None: sent through ``execute_command``
        self._gate_args: dict[tuple[str, float], Packet] = {}
        self._success_args: dict[str, Packet] = {}
        self._views: dict[str, View] = {}

    def _prebuilt(self, op: str, backend: str, args: list[Any]) -> Packet:
        """The op's EVALSHA as the general path's ``_argv`` encodes it plus the brief-reply flag, pre-packed but
        for the op id's counter (and on client time the settings, read per op). ``args`` stay the general path's:
        a hand-over sends no flag, so its replies are whole."""
        st = self.store
        check_backend(backend)
        head, _, *rest = st._argv("", None, args)
        return Packet((b"EVALSHA", st.scripts[op][1].encode(), b"1", st.key(backend).encode()),
                      None if st.time_source == "client" else head, self.op_ids._prefix, (*rest, _BRIEF), args)

    def _wire(self) -> Callable[[bytes], Any] | None:
        """The store's sender for its client, shared by the hot ops of all its breakers (a thread holds one
        connection per store, not one per breaker)."""
        st = self.store
        w = st._hot_wire
        if w is None or w[0] is not st.client:
            w = st._hot_wire = (st.client, wire(st.client))
        return w[1]

    def _general(self, op: str, backend: str, n: int, args: list[Any], post: Any, cnow: float | None,
                 first: BaseException | None) -> Any:
        return self.store._run(op, backend, self.op_ids.format(n), cnow, args, post, first)

    def _decode(self, op: str, raw: Any, post: Any) -> Any:
        """A reply that is not the plain no-op, as the general path decodes it."""
        st = self.store
        return post(*st._with_wait(st.parse_script_reply(op, raw), None))

    def _noop(self, backend: str, raw: Any) -> tuple[View, float] | None:
        """``(view, now)`` for the plain closed-state no-op reply, else None. A record part equal to the
        backend's last view's was checked when that view was made."""
        if raw.__class__ is not bytes or raw[-_NTAIL:] != _TAIL:
            return None
        rec, meta, now = raw[:-_NTAIL].rpartition(_META)
        if not meta:
            return None
        v = self._views.get(backend)
        if v is None or v[0] != rec:
            d = self._template(rec) if rec.count(b"|") == _RECORD_BARS else None
            if d is None:
                return None
            v = self._views[backend] = (rec, d)
        try:
            return v, float(now)  # a '|' in it fails here: not the plain no-op
        except ValueError:
            return None

    def _template(self, rec: bytes) -> dict[str, Any] | None:
        """The reply dict of a no-op's record part, None if it does not decode (the general path's decoding
        raises that error). A brief one (``recent_ops`` ``~k``) has no ``recent_ops`` and ``_recent_ops_omitted``
        = k instead: the record holds k entries this reply left out. A marker the fast path cannot send raises:
        the general path would take it for entries."""
        head, _, ops = rec.rpartition(b"|")
        k = _OMITTED.get(ops) if ops[:1] == b"~" else 0
        if k is None:
            raise StoreError(f"script returned a malformed reply (recent_ops {ops.decode('utf-8', 'replace')!r})")
        try:
            d = self.store.parse_script_reply("gate", (head + b"|" if k else rec) + _META + b"0" + _TAIL)[0]
        except StoreError:
            return None
        if k:
            del d["recent_ops"]
            d["_recent_ops_omitted"] = k
        return d

    def _bypass(self) -> bool:
        """Hooks, WAIT or the WATCH fallback in force: the general path decides."""
        st = self.store
        return st.using_fallback or st.before_command is not None or bool(st.wait_replicas)

    def hot_gate(self, backend: str, n: int, lease_seconds: float) -> tuple[View, float] | ClaimResult:
        """``try_transition_and_claim_probe(backend, lease_seconds=..., op_id=op_ids.format(n))``."""
        a = self._gate_args.get((backend, lease_seconds))
        if a is None or a.prefix is not self.op_ids._prefix:  # new, or a forked child's renewed id prefix
            a = self._gate_args[(backend, lease_seconds)] = self._prebuilt(
                "gate", backend, [repr(check_lease(lease_seconds))])
        return self._hot("gate", backend, n, a, post_claim)

    def hot_success(self, backend: str, n: int) -> tuple[View, float] | dict[str, Any]:
        """``atomic_record_success(backend, op_id=op_ids.format(n))``."""
        a = self._success_args.get(backend)
        if a is None or a.prefix is not self.op_ids._prefix:
            args = ["", "1" if self.store.strict_probe_ownership else "0"]
            a = self._success_args[backend] = self._prebuilt("record_success", backend, args)
        return self._hot("record_success", backend, n, a, post_dict)

    def _hot(self, op: str, backend: str, n: int, a: Packet, post: Any) -> Any:
        st, cnow, head = self.store, None, None
        if a.head is None:  # client time: this op's clock reading, kept for the general path's resends
            cnow = st._client_now(None)
            head = st._argv("", cnow, [])[0]
        if self._bypass():
            return self._general(op, backend, n, a.args, post, cnow, None)
        if st.client is not self._client:  # a client swapped in since
            self._client, self._send = st.client, self._wire()
        try:
            send = self._send
            raw = st.client.execute_command(*a.command(n, head)) if send is None else send(a.bytes(n, head))
        except BaseException as exc:
            return self._general(op, backend, n, a.args, post, cnow, exc)
        st.stats["evalsha"] += 1
        r = self._noop(backend, raw)
        return self._decode(op, raw, post) if r is None else r

    @staticmethod
    def noop_reply(view: View, now: float) -> dict[str, Any]:
        """The reply a no-op answered ``(view, now)`` stands for (``parse_script_reply``'s, as ``_noop`` made it),
        brief: a record with history has ``_recent_ops_omitted`` (its entry count) instead of ``recent_ops``."""
        d = view[1].copy()
        d["_now"] = now
        d["_corrupt"] = []
        return d
