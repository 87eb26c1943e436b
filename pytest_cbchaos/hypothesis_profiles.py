"""The kit's Hypothesis profiles ``cbchaos`` and ``cbchaos-ci``, registered on import and never loaded
implicitly (docs/linearizability-design.md#settings-profiles).

The plugin registers them by itself once Hypothesis is imported; a conftest.py that loads one at import
time imports this module first: ``import pytest_cbchaos.hypothesis_profiles``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_BASE = dict(deadline=None, max_examples=25, stateful_step_count=10, print_blob=True,
             suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("cbchaos", **_BASE)
settings.register_profile("cbchaos-ci", derandomize=True, database=None, **_BASE)
