"""Hypothesis strategies for breaker records, shared by the fast-path and hot-path differential tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from pytest_cbchaos.breaker.record import STATES, Record


def records(t0: float, span: float, op_ids: list[str], *, counts: list[int], generation: int, token_gen: int,
            max_ops: int) -> Any:
    """Any record around ``t0`` (times within ``span``, rounded to ms) whose tokens and ``recent_ops`` use
    ``op_ids``: probe fields set or not, in any state, so rule N and every row of the state machine is reached."""
    times = st.floats(min_value=t0 - span, max_value=t0 + span).map(lambda x: round(x, 3))
    entries = st.tuples(st.sampled_from(op_ids), st.sampled_from(STATES), st.sampled_from(STATES))
    return st.builds(
        Record,
        state=st.sampled_from(STATES),
        failure_count=st.sampled_from(counts),
        last_failure_time=times,
        open_until=st.one_of(st.just(0.0), times),
        half_open_probe_active=st.booleans(),
        probe_token=st.one_of(st.just(""), st.sampled_from(op_ids).map(lambda o: f"{token_gen}:{o}")),
        probe_lease_until=st.one_of(st.just(0.0), times),
        probe_anchor=st.one_of(st.just(0.0), times),
        probe_generation=st.integers(0, generation),
        recent_ops=st.lists(entries, max_size=max_ops).map(tuple),
    )


def corrupt_fields(names: list[str], values: list[str], max_size: int) -> Any:
    """Raw values for up to ``max_size`` of ``names``, each invalid for its field (repaired and reported)."""
    return st.dictionaries(st.sampled_from(names), st.sampled_from(values), max_size=max_size)
