"""Worker processes that start fast and safely: a forkserver context with modules preloaded.

Children fork from a clean single-threaded server (safe, unlike ``fork`` from a threaded pytest) and
skip the imports a ``spawn`` child pays each time (about a second of CPU per worker for the kit).
The server is one per parent process and takes the preload list of its first start; a module the
list lacks is imported by each child, as with ``spawn``. Children get the server's environment and
working directory, not the caller's at fork time."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext
from typing import Iterable


def forkserver_context(preload: Iterable[str]) -> BaseContext:
    """The ``forkserver`` context with ``preload`` set (``spawn`` where forkserver does not exist)."""
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:  # platform without forkserver
        return multiprocessing.get_context("spawn")
    ctx.set_forkserver_preload(list(preload))  # ignored once the server runs; missing modules are skipped
    return ctx
