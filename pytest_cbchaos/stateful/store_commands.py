"""Breaker-store commands shared by the sequential and the concurrent state machines.

A command is a picklable tuple ``(op, backend_index, args)``; :func:`execute` runs it against any
store implementing the breaker store protocol, with an explicit op id, and returns the history
input and the observed output (``breaker.model.output_from_reply`` plus ``now`` = ``_now``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

from hypothesis import strategies as st

from ..breaker import model as bmodel

OPS = ("gate", "record_failure", "record_success", "release_probe", "renew_probe", "force_open",
       "reset", "get_state")
OUTCOMES = ("success", "failure", "abort", "free")
FAKE_TOKEN = "1:" + "f" * 32


class Command(NamedTuple):
    op: str
    backend: int
    args: Mapping[str, Any]

    def describe(self) -> str:
        a = ", ".join(f"{k}={v!r}" for k, v in sorted(self.args.items()))
        return f"{self.op}(b{self.backend}{', ' if a else ''}{a})"


def commands(n_backends: int = 2, *, thresholds: tuple[int, ...] = (1, 2, 3),
             recovery: tuple[float, ...] = (0.001, 600.0), open_for: tuple[float, ...] = (0.0, 600.0),
             weights: Mapping[str, int] | None = None) -> st.SearchStrategy[Command]:
    """Commands over small domains so that operations collide."""
    w = {"gate": 4, "record_failure": 4, "record_success": 2, "release_probe": 3,
         "renew_probe": 1, "force_open": 2, "reset": 1, "get_state": 2}
    w.update(weights or {})
    b = st.integers(0, n_backends - 1)
    per_op = {
        "gate": st.builds(lambda x: Command("gate", x, {}), b),
        "record_failure": st.builds(
            lambda x, t, r: Command("record_failure", x, {"failure_threshold": t,
                                                          "recovery_timeout": r}),
            b, st.sampled_from(thresholds), st.sampled_from(recovery)),
        "record_success": st.builds(
            lambda x, e: Command("record_success", x, {"expected_state": e}),
            b, st.sampled_from([None, None, "closed", "half_open"])),
        "release_probe": st.builds(
            lambda x, o, r: Command("release_probe", x, {"outcome": o, "recovery_timeout": r}),
            b, st.sampled_from(OUTCOMES), st.sampled_from(recovery)),
        "renew_probe": st.builds(lambda x: Command("renew_probe", x, {}), b),
        "force_open": st.builds(lambda x, d: Command("force_open", x, {"open_for_seconds": d}),
                                b, st.sampled_from(open_for)),
        "reset": st.builds(lambda x: Command("reset", x, {}), b),
        "get_state": st.builds(lambda x: Command("get_state", x, {}), b),
    }
    weighted = [s for op, s in per_op.items() for _ in range(w.get(op, 0))]
    return st.one_of(*weighted)


def history_input(cmd: Command, op_id: str, *, token: str | None, lease: float,
                  now: float | None) -> dict[str, Any]:
    """The invoke ``value`` recorded for ``cmd`` (what the model needs to replay it)."""
    inp: dict[str, Any] = {"op_id": op_id}
    a = dict(cmd.args)
    if cmd.op == "gate":
        inp["lease_seconds"] = lease
    elif cmd.op in ("release_probe", "renew_probe"):
        inp["token"] = token or FAKE_TOKEN
        if cmd.op == "renew_probe":
            inp["lease_seconds"] = lease
            del inp["op_id"]
    elif cmd.op == "get_state":
        del inp["op_id"]
    inp.update({k: v for k, v in a.items() if v is not None})
    if now is not None:
        inp["now_min"] = now
    return inp


def execute(store: Any, backend: str, cmd: Command, op_id: str, *, token: str | None,
            lease: float, now: float | None) -> tuple[Any, dict[str, Any]]:
    """Run one command; returns ``(raw reply, observed output with now)``."""
    op, a = cmd.op, cmd.args
    kw: dict[str, Any] = {} if now is None else {"now": now}
    if op == "gate":
        reply = store.try_transition_and_claim_probe(backend, now, None, lease_seconds=lease,
                                                     op_id=op_id)
    elif op == "record_failure":
        reply = store.atomic_record_failure(backend, a["failure_threshold"], a["recovery_timeout"],
                                            op_id=op_id, **kw)
    elif op == "record_success":
        reply = store.atomic_record_success(backend, a.get("expected_state"), op_id=op_id, **kw)
    elif op == "release_probe":
        reply = store.release_probe(backend, token or FAKE_TOKEN, a["outcome"],
                                    recovery_timeout=a["recovery_timeout"], op_id=op_id, **kw)
    elif op == "renew_probe":
        reply = store.renew_probe(backend, token or FAKE_TOKEN, lease_seconds=lease, **kw)
    elif op == "force_open":
        reply = store.force_open(backend, a["open_for_seconds"], op_id=op_id, **kw)
    elif op == "reset":
        reply = store.reset(backend, op_id=op_id, **kw)
    elif op == "get_state":
        reply = store.get_state(backend)
    else:  # pragma: no cover - commands() only draws known ops
        raise ValueError(f"unknown store command {op!r}")
    out = bmodel.output_from_reply(op, reply)
    rec = reply.record if hasattr(reply, "record") else reply
    if isinstance(rec, dict) and rec.get("_now") is not None:
        out["now"] = rec["_now"]
    return reply, out


def won_token(cmd: Command, reply: Any) -> str | None:
    """The probe token a gate reply granted, if any."""
    if cmd.op == "gate" and getattr(reply, "won", False):
        return reply.record.get("probe_token") or None
    return None


def op_id_for(seq: int, salt: int = 0) -> str:
    """Deterministic 32-hex op id (replays of an example use the same ids)."""
    return f"{salt & 0xFFFFFFFF:08x}{seq:024x}"


StoreFactory = Callable[..., Any]
