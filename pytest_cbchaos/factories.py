"""Public API: factories for extra instances (the glue lives in :mod:`pytest_cbchaos.plugin.factories`)."""

from pytest_cbchaos.plugin.factories import proxy, redis_client, redis_proc, redis_sentinel, toxiproxy

__all__ = ["proxy", "redis_client", "redis_proc", "redis_sentinel", "toxiproxy"]
