"""Per-process session setup: orphan sweep, signal handlers, seeded ports, Hypothesis profiles."""

from __future__ import annotations

import os
import zlib

import pytest

from pytest_cbchaos.servers.ports import seed_allocator
from pytest_cbchaos.servers.process import install_signal_handlers, sweep_orphans
from pytest_cbchaos.settings import get_settings


def worker_id(config: pytest.Config) -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


def register_hypothesis_profiles() -> None:
    """The kit's profiles (docs/linearizability-design.md#settings-profiles); registered, never loaded implicitly."""
    from hypothesis import HealthCheck, settings

    base = dict(deadline=None, max_examples=25, stateful_step_count=10, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("cbchaos", **base)
    settings.register_profile("cbchaos-ci", derandomize=True, database=None, **base)


def configure_session(config: pytest.Config) -> None:
    s = get_settings(config)
    seed_allocator(s.seed ^ zlib.crc32(worker_id(config).encode()) ^ os.getpid())
    install_signal_handlers()
    sweep_orphans()
    register_hypothesis_profiles()
