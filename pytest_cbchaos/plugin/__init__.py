"""All pytest glue of pytest-cbchaos (entry point ``cbchaos``): options, ini keys, markers, fixture modules,
scenario collection and report hooks. Servers come from :mod:`pytest_cbchaos.env`; no logic here.

Importing it registers options, markers and fixtures and does nothing else: the fixture modules import
redis-py, aiohttp, Hypothesis, … inside the fixtures (docs/architecture.md, "Zero cost until used")."""

from __future__ import annotations

import pytest

from pytest_cbchaos.settings import OPTIONS, flag, get_settings

pytest_plugins = [
    "pytest_cbchaos.plugin.markers",
    "pytest_cbchaos.plugin.fixtures",
    "pytest_cbchaos.plugin.fixtures_history",
    "pytest_cbchaos.plugin.fixtures_adapters",
    "pytest_cbchaos.plugin.fixtures_breaker",
    "pytest_cbchaos.plugin.fixtures_opencode",
    "pytest_cbchaos.plugin.fixtures_stream",
    "pytest_cbchaos.plugin.fixtures_sentinel",
    "pytest_cbchaos.plugin.scenario",
    "pytest_cbchaos.plugin.report",
    "pytest_cbchaos.plugin.background",
]

MARKERS = [
    "chaos(*faults): declares the faults a test injects (reported)",
    "cbchaos_backends(*names): run only on these backends (NAME, redis:NAME or proxy:NAME), else skip",
    "requires_real_redis: skip on the fakeredis backend (fail under CI when auto fell back to it)",
    "linearizable(model, timeout=None, allow_empty=False): check the test's recorded history against a model",
    "slow: long-running (real opencode, load); still run in CI",
    "opencode: needs the real opencode binary",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cbchaos", "pytest-cbchaos chaos kit")
    for name, (ini_type, default, help_text) in OPTIONS.items():
        group.addoption(flag(name), dest="cbchaos_" + name, default=None,
                        help=f"{help_text} (default: {default})")
        parser.addini("cbchaos_" + name, help_text, type=ini_type, default=None)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    get_settings(config)  # validate options early: a bad value is a usage error, not a test error
    from pytest_cbchaos.plugin.session import configure_session

    configure_session(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """pytest-xdist: every worker writes its artifacts under the controller's run id."""
    from pytest_cbchaos.plugin.run_id import configure_node

    configure_node(node)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput") or get_settings(session.config).keep == "none":
        return
    from pytest_cbchaos.plugin.run_id import artifacts_root, prune_runs, run_id

    prune_runs(artifacts_root(session.config), run_id(session.config))


def pytest_collection_finish(session: pytest.Session) -> None:
    from pytest_cbchaos.plugin.session import register_hypothesis_profiles

    register_hypothesis_profiles()  # test modules that import Hypothesis are imported by now


def pytest_report_header(config: pytest.Config) -> list[str]:
    from pytest_cbchaos.plugin.markers import backends_in_use

    s = get_settings(config)
    used = backends_in_use(config)
    redis = f"{used.redis} (auto: {used.redis_reason})" if used.redis_reason else used.redis
    return [f"cbchaos: proxy={s.proxy_backend} redis={redis} seed={s.seed} "
            f"ports={s.port_range[0]}-{s.port_range[1]}"] + (
        [f"cbchaos: background load {s.background_load} busy processes (per machine, started by the main process)"]
        if s.background_load else [])
