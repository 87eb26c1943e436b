"""``opencode.json`` and the child environment for an isolated opencode server (docs/opencode-design.md#isolation).

``build_config(provider_url, api_key, extra)`` returns the project config dict (provider ``cbchaos`` via
the built-in ``@ai-sdk/openai-compatible``, model ``cbchaos/mock``, no autoupdate, no sharing), with
``extra`` deep-merged. ``build_env(root, username, password)`` builds the child environment from an
allow-list: nothing of the caller's ``OPENCODE_*``, provider keys or proxy variables leaks in; by default
the child is also cut off from everything but loopback (``offline``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

PROVIDER_ID = "cbchaos"
MODEL_ID = "mock"
PRIVATE_DIRS = ("home", "config", "data", "cache", "state", "project", "logs", "tmp")


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def build_config(provider_url: str, api_key: str = "x", extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The project's ``opencode.json``; ``provider_url`` is the mock's (or its proxy's) ``.../v1`` URL."""
    if not provider_url.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")):
        raise ValueError(f"provider_url={provider_url!r}: expected a loopback http URL such as "
                         "http://127.0.0.1:<port>/v1 (tests run offline)")
    config: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "model": f"{PROVIDER_ID}/{MODEL_ID}",
        "small_model": f"{PROVIDER_ID}/{MODEL_ID}",
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "cbchaos mock",
                "options": {"baseURL": provider_url.rstrip("/"), "apiKey": api_key},
                "models": {MODEL_ID: {"name": "cbchaos mock model",
                                      "limit": {"context": 128000, "output": 4096}}},
            }
        },
    }
    return _merge(config, extra or {})


DEAD_PROXY = "http://127.0.0.1:9"  # loopback discard port: connection refused at once


def build_env(root: Path, username: str, password: str, *, log_level: str = "INFO",
              offline: bool = True) -> dict[str, str]:
    """Allow-listed child environment for a server whose private dirs live under ``root``.

    ``offline`` (default) points every HTTP(S) proxy and the npm registry at a closed loopback port
    (``NO_PROXY`` keeps loopback direct): opencode 1.18.33 otherwise runs an npm install of its config-dir
    dependencies (``@opencode-ai/plugin`` …, ~31 MB) into the private HOME on first start whenever the
    network happens to be reachable, so tests would silently depend on it.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TZ": os.environ.get("TZ", "UTC"),
        "HOME": str(root / "home"),
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "XDG_STATE_HOME": str(root / "state"),
        "TMPDIR": str(root / "tmp"),
        "OPENCODE_SERVER_USERNAME": username,
        "OPENCODE_SERVER_PASSWORD": password,
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    }
    if offline:
        for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            env[key] = DEAD_PROXY
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
        env["npm_config_registry"] = env["NPM_CONFIG_REGISTRY"] = DEAD_PROXY + "/"
        env["BUN_CONFIG_REGISTRY"] = DEAD_PROXY + "/"
    return env
