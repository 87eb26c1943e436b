"""Hypothesis state machines and concurrent-history tests for breaker stores (and more)."""

from .concurrent import (ConcurrentConfig, ConcurrentProgram, FaultAction, ProxyFaults, Round,
                         RunStats, check_history, concurrent_store_test, find_violation, programs, run_and_check,
                         write_artifacts)
from .store_commands import Command, commands
from .store_machine import StoreModelMachine, store_machine
