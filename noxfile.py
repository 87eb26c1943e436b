"""Sessions that need an environment of their own (docs/adapters.md#purgatory).

``nox -s purgatory``: ``purgatory[redis]==3.0.1`` pins ``redis<6`` while the kit's environment has
redis-py 8, so its adapters (async and sync unit of work) run here, with ``redis>=5.2,<6``.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"


@nox.session(reuse_venv=True)
def purgatory(session: nox.Session) -> None:
    """The purgatory probes (tests/adapters/test_purgatory.py) with redis-py < 6."""
    session.install("-e", ".", "purgatory[redis]==3.0.1", "redis>=5.2,<6", "pytest-timeout>=2.3")
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "tests/adapters/test_purgatory.py", "-s",
                *session.posargs)
