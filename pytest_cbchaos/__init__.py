"""pytest-cbchaos: chaos test kit for resilience code of LLM-agent backends."""
__version__ = "0.1.0"
