"""Worker-process body for concurrent store programs (spawn start method; importable)."""

from __future__ import annotations

from typing import Any

from ..faults.clock import SkewedClock
from .store_commands import Command, execute, history_input, op_id_for, won_token


def run_commands(store: Any, rec: Any, worker: int, backends: list[str], cmds: list[Command],
                 *, clock: Any, lease: float, time_source: str, seq0: int, salt: int,
                 tokens: dict[str, str], kill_at: int | None = None,
                 on_kill_point: Any = None, classifier: Any = None) -> int:
    """Run one worker's command list, recording each op. Returns the next sequence number.

    At ``kill_at`` the worker records the invoke, calls ``on_kill_point()`` (the parent SIGKILLs
    a process; a thread "dies" without recording the reply) and then issues the call.
    """
    import time as _time

    from ..history.classify import default_classifier
    seq = seq0
    for pos, cmd in enumerate(cmds):
        b = backends[cmd.backend]
        seq += 1
        op_id = op_id_for(seq, salt)
        now = clock.time() if time_source == "client" else None
        now_min = now if now is not None else _time.time()
        token = tokens.get(b)
        inp = history_input(cmd, op_id, token=token, lease=lease, now=now_min)
        h = rec.invoke(worker, cmd.op, inp, key=b)
        if kill_at is not None and pos == kill_at:
            if on_kill_point is not None:
                on_kill_point()
            try:
                execute(store, b, cmd, op_id, token=token, lease=lease, now=now)
            except Exception:
                pass
            return seq  # the reply is never recorded: an indeterminate op
        try:
            reply, out = execute(store, b, cmd, op_id, token=token, lease=lease, now=now)
        except Exception as exc:
            h.exception(exc, classifier or default_classifier)
            continue
        h.ok(out)
        t = won_token(cmd, reply)
        if t:
            tokens[b] = t
        elif cmd.op == "release_probe" and token is not None:
            tokens.pop(b, None)
    return seq


def process_main(factory: Any, worker: int, remote: Any, ctrl: Any, lease: float,
                 time_source: str, salt: int) -> None:
    """Persistent worker: receives rounds over ``ctrl``, records through ``remote``."""
    clock = SkewedClock()
    store = factory(worker, clock)
    tokens: dict[str, str] = {}
    seq = worker * 1_000_000 + 500_000 * (salt % 2)
    try:
        while True:
            try:
                msg = ctrl.recv()
            except EOFError:
                return
            if msg[0] == "stop":
                return
            _, backends, cmds, skew, kill_at, seq_base = msg
            if skew is not None:
                clock.set_skew(skew)
            seq = max(seq, seq_base)

            seq = run_commands(store, remote, worker, backends, [Command(*c) for c in cmds],
                               clock=clock, lease=lease, time_source=time_source, seq0=seq,
                               salt=salt, tokens=tokens, kill_at=kill_at,
                               on_kill_point=lambda: ctrl.send(("kill",)))
            if kill_at is not None and kill_at < len(cmds):
                import time as _t
                deadline = _t.monotonic() + 30
                while _t.monotonic() < deadline:  # bounded; the parent SIGKILLs us
                    _t.sleep(0.01)
                return
            ctrl.send(("done", seq))
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
        remote.close()
