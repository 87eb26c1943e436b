"""The repository's own test configuration: pytester and the Hypothesis profiles ``dev`` and ``ci``.

``ci`` is loaded when the environment variable CI is set (as CI does); ``dev`` otherwise.
Select one explicitly with ``--hypothesis-profile=dev|ci``.
"""

import os

# Imported here, before any in-process pytester run: pytester restores ``sys.modules`` after each inline
# run, so a multiprocessing submodule first imported inside one would be re-imported afterwards and
# multiprocessing's pickler registry would point at the stale copy ("PicklingError: rebuild_connection
# ... not the same object") in whatever test the xdist scheduler puts next on that worker.
import multiprocessing.connection  # noqa: F401
import multiprocessing.forkserver  # noqa: F401
import multiprocessing.reduction  # noqa: F401
import multiprocessing.resource_sharer  # noqa: F401
import multiprocessing.synchronize  # noqa: F401

from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

_common = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("dev", max_examples=30, **_common)
settings.register_profile("ci", max_examples=15, derandomize=True, database=None, **_common)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
