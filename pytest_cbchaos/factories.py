"""Public API: fixture factories (the glue lives in :mod:`pytest_cbchaos.plugin.factories`; README "Fixture factories")."""

from pytest_cbchaos.plugin.factories import (mock_llm, opencode, proxy, redis_async_client, redis_client, redis_proc,
                                             redis_sentinel, toxiproxy)

__all__ = ["mock_llm", "opencode", "proxy", "redis_async_client", "redis_client", "redis_proc", "redis_sentinel",
           "toxiproxy"]
