"""Deprecated module name: one attempt at a turn lives in :mod:`pytest_cbchaos.recovery.attempt`;
the runner is :class:`~pytest_cbchaos.recovery.RecoveryRunner` (``facade.py``) over
:class:`~pytest_cbchaos.recovery.supervisor.AsyncRecoveryRunner`."""

from pytest_cbchaos.recovery.attempt import CONSUMERS, Attempt, ConsumerConflict  # noqa: F401
