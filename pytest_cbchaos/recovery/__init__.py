"""opencode turn runner with stall / server-death recovery (design: docs/recovery-design.md)."""

from pytest_cbchaos.recovery.client import ControlClient, OpencodeRequestError
from pytest_cbchaos.recovery.config import RecoveryConfig, RecoveryConfigError
from pytest_cbchaos.recovery.facade import RecoveryRunner
from pytest_cbchaos.recovery.handle import ServerTarget
from pytest_cbchaos.recovery.attempt import CONSUMERS, Attempt, ConsumerConflict
from pytest_cbchaos.recovery.sse import EventStream, SSEParser
from pytest_cbchaos.recovery.status import AttemptRecord, Liveness, RunStatus, TurnResult, Verdict
from pytest_cbchaos.recovery.supervisor import AsyncRecoveryRunner

__all__ = ["AsyncRecoveryRunner", "Attempt", "AttemptRecord", "CONSUMERS", "ConsumerConflict", "ControlClient",
           "EventStream", "Liveness", "OpencodeRequestError", "RecoveryConfig", "RecoveryConfigError",
           "RecoveryRunner", "RunStatus", "SSEParser", "ServerTarget", "TurnResult", "Verdict"]
