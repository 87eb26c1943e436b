"""opencode / mock-LLM fixtures for tests/servers (until plugin.py registers fixtures_opencode; same names
shadow the plugin's, so nothing runs twice)."""

from pytest_cbchaos.fixtures_opencode import (  # noqa: F401
    _cbchaos_opencode_hygiene, _cbchaos_opencode_proxies, cbchaos_mock_llm, cbchaos_mock_llm_server,
    cbchaos_opencode, cbchaos_opencode_proxy,
)
