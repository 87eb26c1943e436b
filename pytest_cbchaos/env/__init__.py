"""The composition root: the only code that turns :class:`~pytest_cbchaos.settings.Settings` into
servers, proxies and port leases (docs/architecture.md). The pytest fixtures, the scenario runner,
the stream harness and ``cbchaos servers`` all start what they need through an :class:`Environment`.
"""

from pytest_cbchaos.env.environment import Environment, Unavailable
from pytest_cbchaos.env.opencode import OpencodeProxied, OpencodeRig, leave_clean

__all__ = ["Environment", "OpencodeProxied", "OpencodeRig", "Unavailable", "leave_clean"]
