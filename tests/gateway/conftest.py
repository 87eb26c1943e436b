# Fixtures from pytest_cbchaos.fixtures_stream (the lead registers the module in plugin.py; imported
# here so the tests run before that lands; a conftest definition simply overrides the plugin's).
from pytest_cbchaos.fixtures_stream import cbchaos_gateway, cbchaos_stream_config, cbchaos_stream_store  # noqa: F401
