"""pytest-cbchaos: chaos test kit for resilience code of LLM-agent backends.

PYTEST_DONT_REWRITE: this package holds no test code; ``cbchaos run`` imports it before starting pytest,
which would otherwise warn that it cannot be rewritten."""
__version__ = "0.1.0"
