"""Per-process session setup: seeded ports and the kit's Hypothesis profiles, nothing more.

The orphan sweep and the signal handlers come with the first server (servers/process.py ``arm``), and the
profiles are registered only once Hypothesis is imported by someone else, so a session that uses no
cbchaos fixture pays nothing (docs/architecture.md, "Zero cost until used")."""

from __future__ import annotations

import os
import sys
import zlib

import pytest

from pytest_cbchaos.servers.ports import seed_allocator
from pytest_cbchaos.settings import get_settings


def worker_id(config: pytest.Config) -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


def register_hypothesis_profiles() -> None:
    """Register the kit's profiles when Hypothesis is already imported (importing it costs ~0.3 s)."""
    if "hypothesis" in sys.modules:
        import pytest_cbchaos.hypothesis_profiles  # noqa: F401 (registers on import)


def configure_session(config: pytest.Config) -> None:
    s = get_settings(config)
    seed_allocator(s.seed ^ zlib.crc32(worker_id(config).encode()) ^ os.getpid())
    register_hypothesis_profiles()
