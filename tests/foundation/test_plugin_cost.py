"""The plugin costs nothing until used (docs/architecture.md, "Zero cost until used") and describes itself:
loading it imports none of the heavy libraries, a test that uses no cbchaos fixture gets no fixture of ours,
and every public fixture has a docstring for ``pytest --fixtures``."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("redis", "aiohttp", "hypothesis", "httpx", "rich", "fakeredis", "yaml", "jsonschema", "psutil", "toxiproxy",
         "asyncio")
# the kit's own layers below the glue: imported when a fixture or marker is used, not when pytest starts
OWN_LAYERS = ("linearizability", "history", "breaker", "stream", "servers.process", "env", "stateful", "recovery",
              "proxy", "faults")


def test_loading_the_plugin_imports_no_heavy_library() -> None:
    """What pytest does at start: the entry point and every module it lists in ``pytest_plugins``."""
    code = ("import importlib, sys; import pytest_cbchaos.plugin as p; "
            "[importlib.import_module(m) for m in p.pytest_plugins]; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}) | "
            f"{{m for m in sys.modules for own in {OWN_LAYERS!r} if m == 'pytest_cbchaos.' + own}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_test_without_cbchaos_fixtures_gets_none_of_ours(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_plain(request):
            assert [n for n in request.fixturenames if "cbchaos" in n or "toxiproxy" in n] == []
    """)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_adapter_fixture_params_name_every_adapter() -> None:
    from pytest_cbchaos.adapters import ALL_ADAPTERS
    from pytest_cbchaos.plugin.fixtures_adapters import ADAPTER_NAMES

    assert ADAPTER_NAMES == tuple(cls.name for cls in ALL_ADAPTERS)


def test_every_public_fixture_has_a_docstring(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    lines = result.stdout.lines
    ours = [(i, line.split()[0]) for i, line in enumerate(lines)
            if line.startswith(("cbchaos_", "toxiproxy_python")) and "--" in line]
    assert len(ours) >= 25, "\n".join(lines)
    missing = [name for i, name in ours if "no docstring available" in lines[i + 1]]
    assert missing == []


def test_an_unmarked_async_test_is_told_which_plugin_to_use(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        async def test_async(cbchaos_settings):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["cbchaos: an async test needs an asyncio runner plugin: pytest-asyncio*"
                                 "@pytest.mark.anyio*"])
