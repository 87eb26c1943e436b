"""``-config FILE``: decoded like a /populate body (a type error rejects the file, as in Go).

Errors are logged, never a crash.
"""

from __future__ import annotations

import asyncio

import pytest

from pytest_cbchaos.proxy.__main__ import load_config
from pytest_cbchaos.proxy.server import ProxyCollection


def _load(path) -> tuple[dict, list[str]]:
    logged: list[str] = []

    async def run():
        collection = ProxyCollection(seed=1)
        collection.log = logged.append  # type: ignore[method-assign]
        await load_config(collection, str(path))
        found = {name: (p.listen, p.enabled) for name, p in collection.proxies.items()}
        await collection.shutdown()
        return found

    return asyncio.run(run()), logged


def test_entries_decoded_like_populate(tmp_path):
    config = tmp_path / "proxies.json"
    config.write_text('[{"name":"a","upstream":"127.0.0.1:1","listen":null},'
                      ' {"NAME":"b","upstream":"127.0.0.1:1","enabled":false,"junk":' + "[" * 5000 + "]" * 5000 + "},"
                      ' {"name":"","upstream":"127.0.0.1:1"}]')
    found, logged = _load(config)
    assert set(found) == {"a", "b"}
    assert found["a"][0].startswith("127.0.0.1:") and found["a"][1] is True
    assert found["b"] == ("", False)
    assert any("proxy 3: missing required field" in m for m in logged)


@pytest.mark.parametrize("text, message", [
    ("[" * 10001, "invalid character '[' exceeded max depth"),
    ('{"name":"a"}', "cannot unmarshal object into Go value of type []"),
    ("[1,", "unexpected EOF"),
    ('[{"name":"a","upstream":"127.0.0.1:1"},{"name":5,"upstream":"127.0.0.1:1"}]',
     "bad request body: json: cannot unmarshal number into Go struct field .name of type string"),
])
def test_unreadable_file_is_logged(tmp_path, text, message):
    config = tmp_path / "proxies.json"
    config.write_text(text)
    found, logged = _load(config)
    assert found == {}
    assert any(message in m for m in logged), logged
