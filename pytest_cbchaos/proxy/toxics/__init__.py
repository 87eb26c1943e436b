"""Toxics: one module per type; importing this package fills :data:`REGISTRY` (docs/extending.md#a-toxic)."""

from pytest_cbchaos.proxy.toxics import (  # noqa: F401 - registration side effects
    bandwidth, cbchaos_blackhole, cbchaos_http_fault, latency, limit_data, noop, reset_peer, slicer, slow_close, timeout,
)
from pytest_cbchaos.proxy.toxics.base import REGISTRY, Chunk, Toxic

EXTENSION_TYPES = frozenset(t for t, cls in REGISTRY.items() if cls.EXTENSION)

__all__ = ["REGISTRY", "EXTENSION_TYPES", "Chunk", "Toxic"]
