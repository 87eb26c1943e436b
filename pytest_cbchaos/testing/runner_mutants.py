"""Deliberately broken recovery runners (spec §6 mutants) the stall-recovery machine must catch.

Each is a :class:`~pytest_cbchaos.recovery.RecoveryRunner` with one flaw of the prior art:

* ``M1SuccessAfterExhaustion`` reports OK after the budget ran out;
* ``M2StallBeforeLiveness`` checks stall before liveness and only trusts liveness late, so a
  dead server is reported as a stall;
* ``M3PromptBeforeSubscribe`` sends the prompt before ``server.connected`` arrived;
* ``M5RetryWithoutAbort`` retries a stalled turn on the same server without aborting it;
* ``M9ResumeNoteOnly`` retries with a resume note instead of the original prompt.
"""

from __future__ import annotations

from typing import Any

from pytest_cbchaos.recovery.facade import RecoveryRunner
from pytest_cbchaos.recovery.runner import Attempt
from pytest_cbchaos.recovery.status import RunStatus, TurnResult, Verdict
from pytest_cbchaos.recovery.supervisor import AsyncRecoveryRunner
from pytest_cbchaos.recovery.watchdog import Watchdog


class _M1Core(AsyncRecoveryRunner):
    def _finalize(self, verdict: Verdict, attempt: Attempt, records: list, used: int, exhausted: bool,
                  error: str | None = None) -> TurnResult:
        res = super()._finalize(verdict, attempt, records, used, exhausted, error)
        if exhausted:
            res.status, res.error = RunStatus.OK, None  # the prior art's "exit 0" after exhaustion
        return res


class _M2Watchdog(Watchdog):
    check_order = ("interrupted", "completion", "stall", "hard_cap")  # liveness never consulted per tick


class _M2Attempt(Attempt):
    watchdog_class = _M2Watchdog

    def _is_dead(self) -> bool:
        return False  # stream errors never trigger a liveness check either


class _M2Core(AsyncRecoveryRunner):
    attempt_class = _M2Attempt


class _M3Attempt(Attempt):
    prompt_before_subscribe = True


class _M3Core(AsyncRecoveryRunner):
    attempt_class = _M3Attempt


class _M5Core(AsyncRecoveryRunner):
    async def _recover(self, verdict: Verdict, attempt: Attempt) -> str | None:
        if verdict.status == RunStatus.SESSION_STALLED:
            return None  # retry at once on the same server; the stalled turn keeps running
        return await super()._recover(verdict, attempt)


class _M9Core(AsyncRecoveryRunner):
    def retry_prompt(self, prompt: str, attempt_n: int) -> str:
        return "The previous attempt was interrupted. Continue where you left off."


class M1SuccessAfterExhaustion(RecoveryRunner):
    async_class = _M1Core


class M2StallBeforeLiveness(RecoveryRunner):
    async_class = _M2Core


class M3PromptBeforeSubscribe(RecoveryRunner):
    async_class = _M3Core


class M5RetryWithoutAbort(RecoveryRunner):
    async_class = _M5Core


class M9ResumeNoteOnly(RecoveryRunner):
    async_class = _M9Core


MUTANTS: dict[str, type[RecoveryRunner]] = {
    "M1": M1SuccessAfterExhaustion, "M2": M2StallBeforeLiveness, "M3": M3PromptBeforeSubscribe,
    "M5": M5RetryWithoutAbort, "M9": M9ResumeNoteOnly,
}

__all__ = ["MUTANTS", *[cls.__name__ for cls in MUTANTS.values()]]


def make_mutant(name: str, server: Any, config: Any = None, **kwargs: Any) -> RecoveryRunner:
    return MUTANTS[name](server, config, **kwargs)
