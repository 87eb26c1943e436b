"""The composition root: the only code that turns :class:`~pytest_cbchaos.settings.Settings` into
servers, proxies and port leases (docs/architecture.md). The pytest fixtures, the scenario runner,
the stream harness and ``cbchaos servers`` all start what they need through an :class:`Environment`.

The opencode rig's names load on first use: they pull in the recovery client and aiohttp, which a
session that only needs Redis never pays for (docs/architecture.md, "Zero cost until used").
"""

from typing import TYPE_CHECKING, Any

from pytest_cbchaos.env.environment import Environment, Unavailable

if TYPE_CHECKING:
    from pytest_cbchaos.env.opencode import OpencodeProxied, OpencodeRig, leave_clean

__all__ = ["Environment", "OpencodeProxied", "OpencodeRig", "Unavailable", "leave_clean"]

_OPENCODE_NAMES = frozenset({"OpencodeProxied", "OpencodeRig", "leave_clean"})


def __getattr__(name: str) -> Any:
    if name in _OPENCODE_NAMES:
        from pytest_cbchaos.env import opencode

        return getattr(opencode, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
