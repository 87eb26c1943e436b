"""Wing & Gong backtracking search with Lowe's memoisation, for one partition (docs/linearizability-design.md#search).

Credits: Wing & Gong (1993) for the search; Lowe, "Testing for linearizability" (2017) for the
``(linearized-set, state)`` cache; Porcupine (Anish Athalye, MIT) as the reference design for
the linked entry list and the state-hash buckets. The implementation is this project's own.

The search is *resumable*: :meth:`PartitionSearch.run` advances it by at most ``max_steps``
steps and returns, keeping its stack, so a scheduler can interleave partitions
(docs/linearizability-design.md#partitioning-and-scheduling). Hot-loop design for CPython: entries live in integer
lists (``nxt``/``prv``), the set of linearized ops is a Python ``int`` bitset, and the memo is a ``set`` of ``(bits,
state)`` tuples (or hash buckets for models with custom equality).
"""

from __future__ import annotations

import gc
import time
from typing import Any, Sequence

from ..history.ops import Op
from .values import EXACT_TYPES, same_value

RUNNING, OK, ILLEGAL, UNKNOWN = "running", "ok", "illegal", "unknown"
#: ``Model.pure_value`` of an op without one
NO_VALUE: Any = object()
#: the op slot of a dead read's dead end (a return entry's is -1)
DEAD_READ = -2


#: a memo with at least this many entries is released off the clock (``release_retired``)
RETIRE_MIN_ENTRIES = 1024
#: memos of searches that ended, waiting for ``release_retired``
_retired: list[Any] = []


def release_retired() -> int:
    """Free the memos of ended searches (returns how many); ``check`` calls this before its clock
    starts, so freeing a large memo (tenths of a second) never runs past a ``timeout``
    (docs/linearizability-design.md#budgets-and-verdicts)."""
    n = len(_retired)
    _retired.clear()
    return n


Tables = tuple[list[bool], list[Any], list[Any], list[Any]]


def _tables(model: Any, ops: Sequence[Op]) -> Tables:
    """Per op: pure, and the read and update fast paths' values (``NO_VALUE`` where ``step``
    decides), from the model's per-op hooks; a model's ``search_tables(ops)`` may give the same
    four lists in one pass (docs/linearizability-design.md#search).

    Read fast path: ``model.pure_value(op)`` is a value ``v`` such that the op is legal in state
    ``s`` iff ``same_value(v, s)``, leaving ``s`` unchanged; the search then decides it without
    ``step``. Update fast path: ``model.write_value(op)`` is a value the op leads to from any
    state, legally; ``model.append_value(op)`` a ``str`` ``t`` such that from a ``str`` state
    ``s`` the op legally leads to ``s + t``.
    """
    n = len(ops)
    is_pure = getattr(model, "is_pure", None)
    if is_pure is None:
        ro = model.read_only
        pure = [bool(not op.unknown and ro(op.f)) for op in ops]
    else:
        pure = [bool(is_pure(op)) for op in ops]
    pure_value = getattr(model, "pure_value", None)
    pv = [NO_VALUE] * n if pure_value is None else [
        pure_value(op) if p else NO_VALUE for op, p in zip(ops, pure)]
    write_value = getattr(model, "write_value", None)
    append_value = getattr(model, "append_value", None)
    wv = [NO_VALUE] * n if write_value is None else [write_value(op) for op in ops]
    av = [NO_VALUE] * n if append_value is None else [append_value(op) for op in ops]
    return pure, pv, wv, av


#: an op's call or return: (time, 0 for a call or 1 for a return, event index, op id)
Entry = tuple[Any, int, Any, int]


def entries(ops: Sequence[Op]) -> list[Entry]:
    """The ops' calls and returns (crashed ops have none) in the order the search meets them: by
    time, a call before a return at the same time (closed intervals), then by event index; ties
    end at the op id, already ascending."""
    ents = [(op.call, 0, op.invoke_index, i) for i, op in enumerate(ops)]
    ents += [(op.ret, 1, op.invoke_index if op.complete_index is None else op.complete_index, i)
             for i, op in enumerate(ops) if not op.unknown]
    ents.sort()
    return ents


class PartitionSearch:
    """Search state for one partition's ops (ids must be 0..n-1 in list order)."""

    def __init__(self, ops: Sequence[Op], model: Any, *, track: bool = False,
                 max_cache_entries: int = 2_000_000, ents: list[Entry] | None = None) -> None:
        """``ents``: ``entries(ops)``, where the caller has them already (the greedy did)."""
        self.ops = list(ops)
        self.model = model
        self.track = track
        self.max_cache_entries = max_cache_entries
        ops = self.ops
        n = len(ops)
        if [op.id for op in ops] != list(range(n)):
            raise ValueError("partition ops must be numbered 0..n-1")
        tables = getattr(model, "search_tables", None)
        t = None if tables is None else tables(ops)
        self.pure, self.pv, self.wv, self.av = pure, pv, wv, av = _tables(model, ops) if t is None else t
        self.pt = [type(v) if type(v) in EXACT_TYPES else None for v in pv]
        unknown = [op.unknown for op in ops]
        ents = entries(ops) if ents is None else ents
        required = (1 << n) - 1
        if True in unknown:
            for i, u in enumerate(unknown):
                if u:
                    required ^= 1 << i
        m = len(ents)
        # entry 0 = head sentinel, 1..m = entries, m+1 = tail sentinel (a dead end)
        self.op_of = op_of = [-1] * (m + 2)
        #: the op of a call entry, -1 for a return entry or a sentinel (one lookup per step)
        self.call_op = call_op = [-1] * (m + 2)
        self.ret_of = ret_of = [-1] * (m + 2)
        self.call_entry = call_entry = [0] * n
        ret_entry = [-1] * n
        # Reads first: each run of consecutive calls is laid out with the reads on the fast path
        # first, then the others in call order. Every call of a run is a candidate in the same
        # configurations (no return separates them), so the order only decides which is tried
        # first; a legal read is forced (pure-op reduction), and trying it first spares the
        # updates' subtrees (docs/linearizability-design.md#search).
        held: list[int] = []
        j = 0
        for e in ents:
            i = e[3]
            if e[1]:  # a return: the run's held calls, then the return
                for h in held:
                    j += 1
                    op_of[j] = call_op[j] = h
                    call_entry[h] = j
                held.clear()
                j += 1
                op_of[j] = i
                ret_entry[i] = j
            elif pv[i] is NO_VALUE:
                held.append(i)
            else:
                j += 1
                op_of[j] = call_op[j] = i
                call_entry[i] = j
        for h in held:
            j += 1
            op_of[j] = call_op[j] = h
            call_entry[h] = j
        for c, r in zip(call_entry, ret_entry):  # after the loop: a return may precede its call
            ret_of[c] = r
        kinds = [0 if i >= 0 else 1 for i in call_op]
        self.is_call = [not k for k in kinds]
        self.nxt = list(range(1, m + 2)) + [m + 1]
        self.prv = [0] + list(range(0, m + 1))
        self.tail = m + 1
        self.required = required
        #: ``1 << i`` per op (one lookup per step instead of a new int)
        self.bit = [1 << i for i in range(n)]
        self.n_required = required.bit_count()
        # Symmetry reduction for indeterminate ops: two info ops of the same class (same f and
        # input, as the model declares through ``op_class``) are interchangeable once both are
        # callable, and the callable ones form a prefix in call order. So only the earliest
        # unlinearized member of a class is ever tried: ``twin[i]`` is the previous member.
        self.twin = [-1] * n
        op_class = getattr(model, "op_class", None)
        if op_class is not None and required != (1 << n) - 1:  # only indeterminate ops have twins
            last: dict[Any, int] = {}
            for e in range(1, m + 1):
                if not self.is_call[e]:
                    continue
                i = self.op_of[e]
                op = self.ops[i]
                if not op.unknown:
                    continue
                c = op_class(op)
                if c is None:
                    continue
                if c in last:
                    self.twin[i] = last[c]
                last[c] = i
        self.settled = self._settle_masks(kinds, op_of)
        # search state
        self.state = model.init()
        self.bits = 0
        self.stack: list[tuple[int, Any, int, bool, int]] = []
        self.entry = self.nxt[0]
        self.phase = 0
        self.skipped = False
        self.info = unknown  # compared with the phase: True == 1
        self.custom = bool(getattr(model, "custom_equality", False))
        self.cache: Any = {} if self.custom else set()
        self.cache_entries = 0
        self.steps = 0
        self.elapsed_s = 0.0
        self.slow_steps = 0
        self.status = OK if required == 0 else RUNNING
        self.linearization: list[tuple[int, Any]] | None = [] if self.status == OK else None
        # counterexample tracking
        self.best = -1
        self.best_path: list[tuple[int, Any]] = []
        self.best_open = False
        self.first_unplaceable: dict[str, Any] | None = None
        self.reason = ""
        #: the scheduler's order after its first round (lowest first): where a greedy attempt got
        #: stuck, as a share of the entries (checker._searcher)
        self.first_hint = 1.0

    def __del__(self) -> None:
        # a large memo outlives its search until ``release_retired`` (off the caller's clock)
        try:
            if self.cache_entries >= RETIRE_MIN_ENTRIES:
                _retired.append(self.cache)
        except (AttributeError, TypeError):  # a search whose __init__ raised; interpreter teardown
            pass

    # ------------------------------------------------------------------------------------
    def run(self, max_steps: int, deadline: float | None = None) -> str:
        """Advance by up to ``max_steps`` steps; returns the status (``running`` if paused)."""
        if self.status != RUNNING:
            return self.status
        t_start = time.perf_counter()
        # The search allocates memo and stack tuples but never a cycle: the cyclic collector
        # would only re-scan the growing memo (5-10 % of a long search, and lag past a deadline).
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run(max_steps, deadline)
        finally:
            if collecting:
                gc.enable()
            self.elapsed_s += time.perf_counter() - t_start

    def _run(self, max_steps: int, deadline: float | None) -> str:
        ops = self.ops
        step = self.model.step
        call_op, ret_of = self.call_op, self.ret_of
        nxt, prv = self.nxt, self.prv
        required = self.required
        stack = self.stack
        push, pop = stack.append, stack.pop
        cache = self.cache
        custom = self.custom
        track = self.track
        max_cache = self.max_cache_entries
        state, bits, entry = self.state, self.bits, self.entry
        phase, skipped = self.phase, self.skipped
        info = self.info
        steps = self.steps
        limit = steps + max_steps
        cache_n = self.cache_entries
        cache_add = None if custom else cache.add
        pure = self.pure
        pv, pt = self.pv, self.pt
        wv, av = self.wv, self.av
        no_value = NO_VALUE
        twin = self.twin
        settled = self.settled
        bit = self.bit
        has_info = self.required != (1 << len(ops)) - 1
        while True:
            steps += 1
            if not steps & 1023:
                if steps >= limit or (deadline is not None and time.monotonic() > deadline):
                    self.phase, self.skipped = phase, skipped
                    self.state, self.bits, self.entry = state, bits, entry
                    self.steps, self.cache_entries = steps, cache_n
                    return RUNNING
            i = call_op[entry]
            if i >= 0:
                v = pv[i]
                if v is no_value or phase:
                    if info[i] != phase:
                        # phase 0 tries required ops only; phase 1 the indeterminate ones
                        skipped = True
                        entry = nxt[entry]
                        continue
                    t = twin[i]
                    if t >= 0 and not (bits >> t) & 1:
                        entry = nxt[entry]
                        continue
                    ns = wv[i]
                    if ns is not no_value:
                        ok = True
                    elif av[i] is not no_value and type(state) is str:
                        ok, ns = True, state + av[i]
                    else:
                        ok, ns = step(state, ops[i])
                    if ok and info[i] and ns == state:
                        ok = False  # an indeterminate no-op never helps (docs/linearizability-design.md#search)
                    forced = ok and pure[i] and ns == state
                # a read (determinate, so phase 0 and no twin) on the fast path
                elif v == state:
                    ok = forced = True
                    ns = state
                elif type(state) is pt[i]:  # unequal values of one exact type never match
                    need = settled[i]
                    if need is None or v.startswith(state) or bits & need != need:
                        entry = nxt[entry]
                        continue
                    # dead read: from here only appends can change the state before this read
                    # returns, and they only extend it: no completion places it (a dead end,
                    # without trying the indeterminate ops either)
                    ok = False
                    i = DEAD_READ
                else:
                    ok = forced = same_value(v, state)
                    ns = state
                if ok:
                    nb = bits | bit[i]
                    if custom:
                        new = self._custom_add(nb, ns)
                    else:
                        key = (nb, ns)
                        new = key not in cache
                        if new:
                            cache_add(key)
                    if new:
                        cache_n += 1
                        if cache_n > max_cache:
                            self.state, self.bits, self.entry = state, bits, entry
                            self.steps, self.cache_entries = steps, cache_n
                            self.status = UNKNOWN
                            self.reason = "max_cache_entries"
                            return UNKNOWN
                        push((entry, state, bits, forced, phase))
                        state, bits = ns, nb
                        # lift the call entry and its return entry
                        p, q = prv[entry], nxt[entry]
                        nxt[p] = q
                        prv[q] = p
                        r = ret_of[entry]
                        if r >= 0:
                            p, q = prv[r], nxt[r]
                            nxt[p] = q
                            prv[q] = p
                        if bits & required == required:
                            self.state, self.bits = state, bits
                            self.steps, self.cache_entries = steps, cache_n
                            self.status = OK
                            self.linearization = self._path(state)
                            if track:
                                self._note_progress(state)
                            return OK
                        if track:
                            self._note_progress(state)
                        entry = nxt[0]
                        phase = 0
                        skipped = False
                        continue
                    if not forced:
                        entry = nxt[entry]
                        continue
                    # a pure op whose successor configuration already failed: so does this one
                elif i >= 0:
                    entry = nxt[entry]
                    continue
            # dead end: a return entry (or the tail) whose op was not linearized in time, or a
            # forced pure op that failed. Pure-op reduction: an op that is legal here and leaves
            # the state unchanged can be moved to the front of any linearization from this
            # configuration (its call precedes every pending return), so if linearizing it first
            # fails, the configuration fails and no other candidate needs trying.
            if phase == 0 and skipped and i == -1:
                # before giving up on this configuration, try the skipped indeterminate ops
                phase = 1
                entry = nxt[0]
                continue
            if track and self.best_open and i < 0:
                self._note_dead_end(entry, state)
            while True:
                if not stack:
                    self.steps, self.cache_entries = steps, cache_n
                    self.status = ILLEGAL
                    return ILLEGAL
                entry, state, bits, forced, phase = pop()
                r = ret_of[entry]
                if r >= 0:
                    nxt[prv[r]] = r
                    prv[nxt[r]] = r
                nxt[prv[entry]] = entry
                prv[nxt[entry]] = entry
                if not forced:
                    break
            # the entries before this one may include skipped indeterminate ops; with none in the
            # partition, phase 1 would skip every op and meet the same dead end
            skipped = has_info
            entry = nxt[entry]

    def _settle_masks(self, kinds: list[int], op_of: list[int]) -> list[int | None]:
        """Dead-read pruning (docs/linearizability-design.md#search): for each determinate read
        with a ``str`` fast-path value, the bitset of the ops that could set the state to something
        other than an extension of it (neither pure nor appends: writes, cas, ``step`` ops) and
        are called before the read returns; ``None`` where the pruning does not apply."""
        settled: list[int | None] = [None] * len(self.ops)
        pure, av, pt = self.pure, self.av, self.pt
        if str not in pt:  # no read it applies to (registers of ints, models without read values)
            return settled
        resets = 0
        for e in range(1, len(kinds) - 1):
            i = op_of[e]
            if not kinds[e]:
                if not pure[i] and av[i] is NO_VALUE:
                    resets |= 1 << i
            elif pt[i] is str:
                settled[i] = resets
        return settled

    def _custom_add(self, bits: int, state: Any) -> bool:
        model = self.model
        h = hash(bits) ^ model.hash(state)
        bucket = self.cache.get(h)
        if bucket is None:
            self.cache[h] = [(bits, state)]
            return True
        for b, s in bucket:
            if b == bits and model.equal(s, state):
                return False
        bucket.append((bits, state))
        return True

    # -- counterexample bookkeeping (report mode) ------------------------------------------
    def _note_progress(self, state: Any) -> None:
        c = (self.bits_now() & self.required).bit_count()
        if c > self.best:
            self.best = c
            self.best_path = self._path(state)
            self.best_open = True

    def bits_now(self) -> int:
        b = 0
        for e, *_ in self.stack:
            b |= 1 << self.op_of[e]
        return b

    def _path(self, state: Any) -> list[tuple[int, Any]]:
        """(op id, state after) for each op on the current stack."""
        stack, op_of = self.stack, self.op_of
        afters = [frame[1] for frame in stack[1:]]  # a frame holds the state before its op
        afters.append(state)
        return [(op_of[frame[0]], after) for frame, after in zip(stack, afters)]

    def _note_dead_end(self, entry: int, state: Any) -> None:
        self.best_open = False
        i = self.op_of[entry]
        attempts = []
        e = self.nxt[0]
        while e != self.tail and len(attempts) < 10:
            if self.is_call[e]:  # a dead read's own call entry included
                op = self.ops[self.op_of[e]]
                try:
                    expl = self.model.explain(state, op)
                except Exception as exc:  # explain is advisory; never break the checker
                    expl = f"explain failed: {exc!r}"
                attempts.append({"op": op.id, "state": state, "explain": expl})
            if e == entry:
                break
            e = self.nxt[e]
        self.first_unplaceable = {"op": i if i >= 0 else None, "state": state,
                                  "attempts": attempts}

    @property
    def best_prefix_len(self) -> int:
        if self.status == OK:
            return self.n_required
        return max(self.best, 0) if self.track else (self.bits_now() & self.required).bit_count()
