"""Linearizability checking: Wing & Gong search + Lowe's memo + P-compositional partitioning.

Importable without pytest. See ``docs/linearizability.md``; design: docs/linearizability-design.md#checker;
new models: docs/extending.md#a-checker-model.
"""

from ..history.ops import INF, UNKNOWN, MalformedHistory, Op
from .checker import (CheckResult, LinearizabilityResult, LinearizabilityViolation, PartitionResult, Verdict, check,
                      check_events, compose, cut, minimal_window)
from .jepsen import check_jepsen_log, read_jepsen_log
from .porcupine_kv import check_porcupine_kv_log, read_porcupine_kv
from .model import Model, ModelProtocol, NondeterministicModel, PowerSetModel, partition_by_key
from .models import (CasRegisterModel, CounterModel, KVModel, RegisterModel, SetModel, get_model,
                     model_names, register_model)
from .values import ValueTypeMismatch

__all__ = [
    "INF", "UNKNOWN", "MalformedHistory", "Op", "LinearizabilityResult", "CheckResult", "LinearizabilityViolation",
    "PartitionResult", "Verdict", "check", "check_events", "compose", "cut", "minimal_window",
    "check_jepsen_log", "read_jepsen_log", "check_porcupine_kv_log", "read_porcupine_kv", "Model", "ModelProtocol", "NondeterministicModel",
    "PowerSetModel", "partition_by_key", "CasRegisterModel", "CounterModel", "KVModel",
    "RegisterModel", "SetModel", "get_model", "model_names", "register_model", "ValueTypeMismatch",
]
