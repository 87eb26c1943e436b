"""Target ``breaker-store``: N workers drive the project's Redis breaker store (docs/breaker-design.md#store-protocol)
through the fault proxy while the downstream fails for a phase, then recovers.

Per worker loop: gate (``try_transition_and_claim_probe``); admitted callers "call" the simulated
downstream (failing during ``workload.params.fail_from_s .. fail_until_s``) and record the outcome
(``atomic_record_failure``/``atomic_record_success``; probe owners ``release_probe``). Replies are
recorded with their metadata; invariants are checked by ``breaker_checks`` (pure functions).
Worker death is modelled in-process: a ``kill`` of ``probe-owner`` makes the worker holding the
probe abandon it (no release) and stop, which is what a SIGKILLed owner looks like to the store.
"""

from __future__ import annotations

import inspect
import threading
import time
import uuid
from typing import Any

from pytest_cbchaos.params import Param, defaults
from pytest_cbchaos.scenario.target import CheckResult, Observations, Target, TargetUnavailable
from pytest_cbchaos.scenario.targets import breaker_checks as bc


class _ProbeOwner:
    """Process-fault handle for the worker currently holding the probe."""

    name = "probe-owner"

    def __init__(self) -> None:
        self.killed = threading.Event()
        self.killed_at_ns: int | None = None
        self.paused = threading.Event()

    def kill(self) -> None:
        self.killed_at_ns = time.monotonic_ns()
        self.killed.set()

    def pause(self) -> None:
        self.paused.set()

    def resume(self) -> None:
        self.paused.clear()

    def restart(self, graceful: bool = False) -> None:
        self.kill()

    @property
    def alive(self) -> bool:
        return not self.killed.is_set()

    def start(self) -> None:  # a killed worker stays dead for the rest of the run
        pass


class BreakerStoreTarget(Target):
    name = "breaker-store"
    description = "distributed circuit breaker state in Redis, behind the fault proxy"
    requires = ("pytest_cbchaos.breaker.store", "pytest_cbchaos.servers.toxiproxy")
    default_proxies = ("redis",)
    default_model = "breaker-store"
    params = {
        "failure_threshold": Param(int, 3, "failures that open the breaker", minimum=1),
        "cooldown_s": Param(float, 0.3, "cooldown: seconds the breaker stays open", minimum=0),
        "lease_s": Param(float, 0.5, "probe lease, seconds", minimum=0),
        "fail_from_s": Param(float, 0.2, "the downstream fails from this time", minimum=0),
        "fail_until_s": Param(float, None, "... until this time (default: half the workload)", minimum=0,
                              nullable=True),
        "socket_timeout_s": Param(float, 0.5, "Redis client socket timeout", minimum=0),
        "backend": Param(str, "svc", "breaker key (the protected backend's name)"),
        "time_source": Param(str, "server", "whose clock the store uses: server or client",
                             check=lambda v: None if v in ("server", "client") else "server or client"),
        "store_factory": Param(str, None, "'pkg.mod:factory' building your own store", nullable=True),
        "wait_replicas": Param(int, 0, "WAIT for this many replicas after each write (0: off); a reply with fewer "
                                       "is recorded as not durable: applied or lost (docs/linearizability.md#not-durable-writes)",
                               minimum=0),
        "wait_timeout_ms": Param(int, 100, "WAIT timeout, milliseconds", minimum=1),
    }
    invariants = {
        "CB-3": "single probe owner",
        "CB-9": "failures while OPEN extend the cooldown",
        "CB-15": "no false rejection after a concurrent close",
        "CB-16": "open_until is monotone",
        "CB-20": "reaching failure_threshold failures always trips",
        "CB-24": "a dead probe owner wedges for at most the lease",
        "CB-26": "gate decisions consistent with open_until (clock skew bounded)",
        "no-crash": "no store exception other than StoreError subclasses escaped",
        "recovers": "the breaker closes again after the faults heal",
        "no-lost-writes": "every acknowledged write is in the surviving record (docs/redis-topologies.md#what-is-judged)",
        "loses-writes": "the expectation of a split brain without WAIT: acknowledged writes are lost, counted "
                        "and named (docs/redis-topologies.md#cluster-split-brain)",
    }
    measured = frozenset({"CB-16", "CB-24", "CB-26"})

    def processes(self, topology: Any) -> list[str]:
        return [*super().processes(topology), "redis", "probe-owner"]

    def params_error(self, topology: Any, params: dict[str, Any]) -> tuple[tuple[str, ...], Any, str] | None:
        if (topology.redis or {}).get("cluster") is not None and params.get("wait_replicas"):
            return (("workload", "params", "wait_replicas"), params["wait_replicas"],
                    "0 with topology.redis.cluster (a RedisCluster client runs WAIT on another node than the write)")
        return None

    def required_modules(self, scenario: Any = None) -> tuple[str, ...]:
        if scenario is not None and scenario.workload.params.get("store_factory"):
            return ("pytest_cbchaos.servers.toxiproxy",)  # the user's store replaces ours
        return self.requires

    @staticmethod
    def _store_factory(ctx: Any) -> Any:
        spec = ctx.scenario.workload.params.get("store_factory")
        if not spec:
            from pytest_cbchaos.breaker.store import make_store  # type: ignore[import-not-found]

            return lambda client, **kw: make_store("redis", redis_client=client, **kw)
        import importlib
        import sys

        mod_name, _, attr = str(spec).partition(":")
        base = str(ctx.scenario.path.parent)
        added = base not in sys.path
        if added:
            sys.path.insert(0, base)
        try:
            return getattr(importlib.import_module(mod_name), attr)
        finally:
            if added:
                sys.path.remove(base)

    def setup(self, ctx: Any) -> None:
        import redis

        if ctx.env is None:
            raise TargetUnavailable("breaker-store needs servers (no environment)")
        cluster = (ctx.scenario.topology.redis or {}).get("cluster")
        if cluster is not None:
            self._setup_cluster(ctx, ctx.env.cluster(int(cluster.get("shards", 3))))
            return
        sentinel = (ctx.scenario.topology.redis or {}).get("sentinel")
        if sentinel is not None:
            self._setup_sentinel(ctx, ctx.env.sentinel(int(sentinel.get("replicas", 2))))
            return
        server = ctx.env.redis((ctx.scenario.topology.redis or {}).get("backend"))
        ctx.processes["redis"] = server
        ctx.admin = server.client()
        ctx.admin.flushall()
        proxy = ctx.env.proxy("redis", f"{server.host}:{server.port}")
        ctx.proxies["redis"] = proxy
        ctx.processes["probe-owner"] = _ProbeOwner()
        ctx.state.update(server=server, proxy=proxy, redis_mod=redis)

    @staticmethod
    def _setup_sentinel(ctx: Any, topo: Any) -> None:
        """Workers use Sentinel-managed clients; ``redis`` (proxy, process, admin) is the primary at the start."""
        import redis

        topo.clean()
        primary = topo.primary()
        ctx.state.update(sentinel=topo, server=primary, proxy=primary.client, redis_mod=redis)
        ctx.processes["redis"] = primary
        ctx.proxies["redis"] = primary.client
        ctx.admin = primary.admin()
        ctx.processes["probe-owner"] = _ProbeOwner()

    def _setup_cluster(self, ctx: Any, topo: Any) -> None:
        """Workers use ``RedisCluster`` clients; ``redis`` (proxy, process, admin) is the primary serving the
        breaker key at the start, ``cluster_key`` that key (``RedisStore``'s layout)."""
        import redis

        from pytest_cbchaos.breaker import RedisStore

        topo.clean()
        with topo.nodes[0].admin() as a:
            key = RedisStore(a, key_prefix=self._key_prefix(ctx)).key(self._params(ctx)["backend"])
        owner = topo.owner(key)
        ctx.state.update(cluster=topo, cluster_key=key, server=owner, proxy=owner.client, redis_mod=redis)
        ctx.processes["redis"] = owner
        ctx.proxies["redis"] = owner.client
        ctx.admin = owner.admin()
        ctx.processes["probe-owner"] = _ProbeOwner()

    @staticmethod
    def _key_prefix(ctx: Any) -> str:
        return f"cbchaos:scn:{ctx.scenario.name}"

    def teardown(self, ctx: Any) -> None:
        if ctx.admin is not None:
            ctx.admin.close()

    def _params(self, ctx: Any) -> dict[str, Any]:
        p = defaults(self.params)
        p.update(ctx.scenario.workload.params)
        if p["fail_until_s"] is None:
            p["fail_until_s"] = ctx.scenario.workload.duration_s / 2
        return p

    def run(self, ctx: Any) -> Observations:
        factory = self._store_factory(ctx)
        redis = ctx.state["redis_mod"]
        proxy, server = ctx.state["proxy"], ctx.state["server"]
        p = self._params(ctx)
        obs = Observations()
        ops: list[dict[str, Any]] = []
        lock = threading.Lock()
        owner: _ProbeOwner = ctx.processes["probe-owner"]
        wedge: dict[str, Any] = {"holder": None, "takeover_ns": None}

        def record(rec: dict[str, Any]) -> None:
            with lock:
                ops.append(rec)

        from pytest_cbchaos.history.classify import default_classifier
        from pytest_cbchaos.history.recorder import Recorder

        n_workers = ctx.scenario.topology.workers
        recorder = Recorder(n_workers, journal=ctx.journal, t0_ns=ctx.t0_ns)
        backend = p["backend"]
        supported: dict[str, Any] = {}

        def lin(h: Any, f: str, call: Any) -> Any:
            """Run ``call()`` as op ``f`` of the linearizability history (model breaker-store)."""
            try:
                reply = call()
            except Exception as exc:
                h.exception(exc, default_classifier)
                raise
            try:
                out = observed(f, reply)
            except Exception as exc:  # a reply without the store's metadata cannot be checked
                h.info(("unobservable", f"{type(exc).__name__}: {exc}"))
                supported["reason"] = f"{f} reply lacks the store metadata ({type(exc).__name__}: {exc})"
                return reply
            if not durable(reply, p["wait_replicas"]):
                out["durable"] = False  # applied as observed, or lost in a failover (checker_model.maybe_lost)
            h.ok(out)
            return reply

        def worker(wid: int) -> None:
            name = f"w{wid}"
            if "cluster" in ctx.state:
                client = ctx.state["cluster"].cluster_client(socket_timeout=p["socket_timeout_s"])
            elif "sentinel" in ctx.state:
                client = ctx.state["sentinel"].master_client(socket_timeout=p["socket_timeout_s"])
            else:
                client = redis.Redis(host=proxy.listen_host, port=proxy.listen_port, password=server.password,
                                     socket_timeout=p["socket_timeout_s"], socket_connect_timeout=p["socket_timeout_s"])
            extra = {"time_source": p["time_source"], "clock": ctx.clocks.get(f"worker-{wid}")} \
                if p["time_source"] == "client" else {}
            if p["wait_replicas"]:
                extra.update(wait_replicas=p["wait_replicas"], wait_timeout_ms=p["wait_timeout_ms"])
            store = factory(client, key_prefix=self._key_prefix(ctx), probe_lease_seconds=p["lease_s"],
                            **extra)
            ids = accepts_op_id(store)
            if not ids:
                supported["reason"] = f"{type(store).__name__} does not accept op_id= (the model replays ops by id)"
            clock = ctx.clocks.get(f"worker-{wid}") if p["time_source"] == "client" else None

            def invoke(f: str, **inp: Any) -> tuple[Any, dict[str, Any]]:
                op_id = uuid.uuid4().hex
                value = {"op_id": op_id, **inp, "now_min": clock.time() if clock is not None else time.time()}
                return recorder.invoke(wid, f, value, key=backend), ({"op_id": op_id} if ids else {})

            state = "closed"
            done = 0
            try:
                while ctx.ops_left(done):
                    done += 1
                    t0 = time.monotonic_ns()
                    try:
                        h, kw = invoke("gate", lease_seconds=p["lease_s"])
                        claim = lin(h, "gate", lambda: store.try_transition_and_claim_probe(
                            backend, None, p["cooldown_s"], lease_seconds=p["lease_s"], **kw))
                        ok, reply = True, dict(claim.record)
                        reply["_label"] = claim.label
                        won, token, admitted = bool(claim.won), claim.token, bool(claim.admitted)
                    except Exception as exc:
                        ok, reply, won, token, admitted = False, {"error": f"{type(exc).__name__}: {exc}"}, False, None, False
                    t1 = time.monotonic_ns()
                    obs.add("latencies", {"t_ms": ctx.t_ms(t0), "worker": name, "ms": (t1 - t0) / 1e6, "ok": ok})
                    record({"t_ms": ctx.t_ms(t0), "end_ms": ctx.t_ms(t1), "worker": name, "op": "gate", "ok": ok, "reply": reply,
                            "won": won, "token": token, "admitted": admitted})
                    state = self._transition(obs, ctx, name, state, reply, t1)
                    if won:
                        if wedge["holder"] is None and owner.killed_at_ns and t0 > owner.killed_at_ns:
                            wedge["takeover_ns"] = t0
                        if wedge["holder"] is None and not owner.killed.is_set():
                            wedge["holder"] = name
                        if wedge["holder"] == name and owner.killed.wait(0):
                            return  # the probe owner "died" holding the claim: no release, no more ops
                    if ok and admitted:
                        elapsed = (time.monotonic_ns() - ctx.t0_ns) / 1e9
                        failing = p["fail_from_s"] <= elapsed < p["fail_until_s"]
                        t2 = time.monotonic_ns()
                        try:
                            if won:
                                outcome = "failure" if failing else "success"
                                h, kw = invoke("release_probe", token=token, outcome=outcome,
                                               recovery_timeout=p["cooldown_s"])
                                r = lin(h, "release_probe", lambda: store.release_probe(
                                    backend, token, outcome, recovery_timeout=p["cooldown_s"], **kw))
                                kind = "release"
                            elif failing:
                                h, kw = invoke("record_failure", failure_threshold=p["failure_threshold"],
                                               recovery_timeout=p["cooldown_s"])
                                r = lin(h, "record_failure", lambda: store.atomic_record_failure(
                                    backend, p["failure_threshold"], p["cooldown_s"], **kw))
                                kind = "failure"
                            else:
                                h, kw = invoke("record_success")
                                r = lin(h, "record_success", lambda: store.atomic_record_success(backend, **kw))
                                kind = "success"
                            ok2, r = True, dict(r)
                        except Exception as exc:
                            ok2, r, kind = False, {"error": f"{type(exc).__name__}: {exc}"}, "failure" if failing else "success"
                        record({"t_ms": ctx.t_ms(t2), "end_ms": ctx.t_ms(), "worker": name, "op": kind, "ok": ok2, "reply": r,
                                "token": token, "outcome": "failure" if failing else "success"})
                        state = self._transition(obs, ctx, name, state, r, time.monotonic_ns())
                        if won and wedge["holder"] == name:
                            wedge["holder"] = None
                    if not ctx.pace():
                        break
            finally:
                client.close()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True)
                   for i in range(ctx.scenario.topology.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.1, ctx.deadline - time.monotonic()))
        obs.metrics["ops"] = ops
        obs.metrics["params"] = p
        recorder.close(crash_pending=True)  # a worker still inside a call (wall budget) is indeterminate
        obs.history = recorder.events()
        obs.metrics["lin_history"] = recorder.history()
        if supported.get("reason"):
            obs.metrics["lin_unsupported"] = supported["reason"]
        obs.metrics["wedge_s"] = ((wedge["takeover_ns"] - owner.killed_at_ns) / 1e9
                                  if owner.killed_at_ns and wedge["takeover_ns"] else None)
        self._measure_recovery(obs, ctx, ops)
        return obs

    @staticmethod
    def _transition(obs: Observations, ctx: Any, worker: str, state: str, reply: dict[str, Any], t_ns: int) -> str:
        new = reply.get("_new_state") or reply.get("state")
        if new and new != state:
            obs.add("transitions", {"t_ms": ctx.t_ms(t_ns), "worker": worker, "from": state, "to": new})
            return str(new)
        return state

    @staticmethod
    def _measure_recovery(obs: Observations, ctx: Any, ops: list[dict[str, Any]]) -> None:
        ends = [w["end_ns"] for w in ctx.journal.to_dicts() if w.get("end_ns")]
        fail_until_ms = float(obs.metrics["params"]["fail_until_s"]) * 1000
        start_ms = max([ctx.t_ms(e) for e in ends] + [fail_until_ms])
        closed = [o["t_ms"] for o in ops if o["ok"] and o["t_ms"] >= start_ms
                  and o["reply"].get("_new_state", o["reply"].get("state")) == "closed"]
        obs.recoveries["closed-after-heal"] = (min(closed) - start_ms) / 1000 if closed else None
        # the first moment a probe could close it: after the heal and a cooldown after its last opening
        opened = [t["t_ms"] for t in obs.transitions if t["to"] == "open"]
        cooldown_ms = float(obs.metrics["params"]["cooldown_s"]) * 1000
        obs.metrics["recovery_window"] = {
            "heal_ms": start_ms, "probe_from_ms": max([start_ms] + [t + cooldown_ms for t in opened]),
            "last_op_ms": max((o["t_ms"] for o in ops), default=None)}

    # -- invariants ---------------------------------------------------------------------------
    def check_CB_3(self, obs: Observations, ctx: Any) -> CheckResult:
        return bc.single_probe_owner(obs.metrics["ops"], obs.metrics["params"]["lease_s"])

    def check_CB_9(self, obs: Observations, ctx: Any) -> CheckResult:
        return bc.failure_extends_cooldown(obs.metrics["ops"], obs.metrics["params"]["cooldown_s"])

    def check_CB_15(self, obs: Observations, ctx: Any) -> CheckResult:
        return bc.no_false_rejection(obs.metrics["ops"])

    def check_CB_16(self, obs: Observations, ctx: Any) -> CheckResult:
        return bc.open_until_monotone(obs.metrics["ops"])

    def check_CB_20(self, obs: Observations, ctx: Any) -> CheckResult:
        return bc.threshold_trips(obs.metrics["ops"], obs.metrics["params"]["failure_threshold"])

    def check_CB_24(self, obs: Observations, ctx: Any) -> CheckResult:
        p = obs.metrics["params"]
        r = bc.wedge_bound(obs.metrics.get("wedge_s"), p["lease_s"], ctx.scenario.workload.interval_ms / 1000)
        obs.probes.append({"id": "CB-24", "value": obs.metrics.get("wedge_s"), "unit": "s", "note": "probe wedge"})
        return r

    def check_CB_26(self, obs: Observations, ctx: Any) -> CheckResult:
        return bc.cooldown_consistent(obs.metrics["ops"])

    def check_no_crash(self, obs: Observations, ctx: Any) -> CheckResult:
        bad = [o for o in obs.metrics["ops"] if not o["ok"] and not str(o["reply"].get("error", "")).startswith("Store")]
        if bad:
            return CheckResult("violated", f"{len(bad)} non-StoreError exceptions escaped the store",
                               counterexample={"ops": bad[:5]})
        return CheckResult("ok", "only StoreError subclasses escaped")

    def check_no_lost_writes(self, obs: Observations, ctx: Any) -> CheckResult:
        audit = self._lost_writes(obs, ctx)
        if audit.count:
            return CheckResult("violated", audit.describe(), counterexample=audit.to_dict())
        return CheckResult("ok", audit.describe() + f" of {audit.checked} acknowledged")

    def check_loses_writes(self, obs: Observations, ctx: Any) -> CheckResult:
        audit = self._lost_writes(obs, ctx)
        if not audit.count:
            return CheckResult("violated", f"no acknowledged write was lost ({audit.checked} checked): the split "
                                           "brain did not happen, or no worker wrote through the cut-off primary")
        return CheckResult("ok", audit.describe() + f" of {audit.checked} acknowledged, as expected without WAIT",
                           measured=audit.to_dict())

    def _lost_writes(self, obs: Observations, ctx: Any) -> Any:
        """The lost-writes audit of the run (computed once; its count reported as probe ``lost-writes``)."""
        if "lost_writes" in obs.metrics:
            return obs.metrics["lost_writes"]
        from pytest_cbchaos.breaker import RedisStore
        from pytest_cbchaos.breaker.checker_model import BreakerStoreModel
        from pytest_cbchaos.breaker.lost_writes import lost_acknowledged_writes, read_survivors

        backend = obs.metrics["params"]["backend"]
        topo = ctx.state.get("sentinel")  # checks run after teardown: a fresh direct link to the (current) primary
        if "cluster" in ctx.state:
            admin = ctx.state["cluster"].owner(ctx.state["cluster_key"]).admin()
        else:
            admin = topo.primary().admin() if topo is not None else ctx.state["server"].client()
        try:  # the record layout of RedisStore (a custom store_factory must keep it for this check)
            survivors = read_survivors(admin, RedisStore(admin, key_prefix=self._key_prefix(ctx)),
                                       [backend])
        finally:
            admin.close()
        ops = obs.metrics["lin_history"].ops(BreakerStoreModel().read_only)
        audit = obs.metrics["lost_writes"] = lost_acknowledged_writes(ops, survivors)
        obs.probes.append({"id": "no-lost-writes", "value": audit.count, "unit": "writes",
                           "note": f"lost acknowledged writes ({audit.checked} checked)"})
        return audit

    def check_recovers(self, obs: Observations, ctx: Any) -> CheckResult:
        v = obs.recoveries.get("closed-after-heal")
        if v is None:
            w = obs.metrics["recovery_window"]
            if w["last_op_ms"] is None or w["last_op_ms"] < w["probe_from_ms"]:
                return CheckResult("unknown", f"nothing to judge: the last op started at {w['last_op_ms']} ms, before "
                                   f"a probe could close the breaker ({w['probe_from_ms']:.0f} ms: the heal at "
                                   f"{w['heal_ms']:.0f} ms, a cooldown after its last opening)", measured=w)
            return CheckResult("violated", "the breaker never closed after the faults healed",
                               counterexample={"transitions": obs.transitions[-10:]}, measured=w)
        return CheckResult("ok", f"closed {v:.3f} s after the last heal")


def accepts_op_id(store: Any) -> bool:
    """Whether every op the workload calls takes ``op_id=`` (needed to replay dedupe in the model)."""
    for name in ("try_transition_and_claim_probe", "atomic_record_failure", "atomic_record_success", "release_probe"):
        try:
            params = inspect.signature(getattr(store, name)).parameters
        except (AttributeError, TypeError, ValueError):
            return False
        if "op_id" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return False
    return True


def durable(reply: Any, wait_replicas: int) -> bool:
    """Under ``wait_replicas`` a write is acknowledged only when that many replicas have it (else indeterminate)."""
    rec = reply.record if hasattr(reply, "record") else reply
    if not wait_replicas or not isinstance(rec, dict) or "_replicas_acked" not in rec:
        return True
    return (rec["_replicas_acked"] or 0) >= wait_replicas


def observed(f: str, reply: Any) -> dict[str, Any]:
    """The completion value the breaker-store model checks: ``output_from_reply`` plus ``now``.

    A ``_duplicate`` reply answers a resend of an op the store had already applied: its ``_now``
    is the resend's time, an upper bound of the op's, recorded as ``now_max`` (docs/linearizability.md).
    """
    from pytest_cbchaos.breaker import model as bmodel

    out = bmodel.output_from_reply(f, reply)
    rec = reply.record if hasattr(reply, "record") else reply
    if isinstance(rec, dict) and rec.get("_now") is not None:
        out["now_max" if rec.get("_duplicate") else "now"] = rec["_now"]
    return out
