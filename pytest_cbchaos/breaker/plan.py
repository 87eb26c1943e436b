"""Sans-I/O plans and their two drivers: one policy, written once, run by a sync and an async shell.

A plan is a generator that yields each I/O step as a zero-argument callable and gets back the
step's result, or its exception thrown in at the ``yield`` (so the plan's own ``try`` blocks see
it as if the call were made in place). :func:`drive` runs the steps in this thread;
:func:`adrive` awaits a step that returns an awaitable. The breaker's retry policy and the
store's WATCH/MULTI fallback are plans (docs/breaker.md).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Generator

Plan = Generator[Callable[[], Any], Any, Any]  # yields I/O steps, gets back their results
Outcome = tuple[Any, "BaseException | None"]  # a step's (result, exception)


def _advance(plan: Plan, outcome: Outcome) -> tuple[bool, Any]:
    """Hand a step's outcome to the plan: ``(False, next step)`` or ``(True, the plan's result)``."""
    value, error = outcome
    try:
        return False, (plan.throw(error) if error is not None else plan.send(value))
    except StopIteration as stop:
        return True, stop.value


def drive(plan: Plan, outcome: Outcome = (None, None)) -> Any:
    """Run ``plan`` to its result in this thread; ``outcome``: that of a step already run in place."""
    while True:
        done, step = _advance(plan, outcome)
        if done:
            return step
        try:
            outcome = (step(), None)
        except BaseException as exc:  # handed to the plan, which re-raises what it does not handle
            outcome = (None, exc)


async def adrive(plan: Plan) -> Any:
    """Run ``plan`` to its result on this event loop."""
    outcome: Outcome = (None, None)
    while True:
        done, step = _advance(plan, outcome)
        if done:
            return step
        try:
            value = step()
            outcome = (await value if inspect.isawaitable(value) else value, None)
        except BaseException as exc:  # handed to the plan, which re-raises what it does not handle
            outcome = (None, exc)
