"""``--cbchaos-background-load=N``: N busy processes for the whole session (docs/cli.md, "Background load").

The load is per machine, so only the main process starts it: the xdist controller, or pytest itself
without xdist; xdist workers never do. The burners start at session start, stop at session finish
(before the report is written, which records N and the CPU seconds they burned) and, as every
process the kit starts, die with the session however it ends (servers/process.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_cbchaos.settings import flag, get_settings

if TYPE_CHECKING:
    from pytest_cbchaos.faults.cpu import Burners

BURNERS_KEY = pytest.StashKey["Burners"]()
SUMMARY_KEY = pytest.StashKey[dict[str, Any]]()


def is_main_process(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def background_load(config: pytest.Config) -> dict[str, Any]:
    """``{"workers": N, "cpu_s": seconds burned so far}`` as report.json's ``background_load``."""
    summary = config.stash.get(SUMMARY_KEY, None)
    if summary is not None:
        return dict(summary)
    burners = config.stash.get(BURNERS_KEY, None)
    if burners is None:
        return {"workers": 0, "cpu_s": 0.0}
    return {"workers": burners.workers, "cpu_s": round(burners.cpu_seconds(), 3)}


def burner_pids(config: pytest.Config) -> list[int]:
    burners = config.stash.get(BURNERS_KEY, None)
    return burners.pids if burners is not None else []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    n = get_settings(config).background_load
    if n and is_main_process(config) and BURNERS_KEY not in config.stash:
        from pytest_cbchaos.faults.cpu import MAX_FOR_S, Burners
        from pytest_cbchaos.servers.process import ServerStartError

        try:
            config.stash[BURNERS_KEY] = Burners(n, MAX_FOR_S, name="background-load").start()
        except ServerStartError as exc:  # a message and exit 4, like every setting that cannot work
            origin = get_settings(config).sources.get("background_load", "")
            raise pytest.UsageError(f"{flag('background_load')}={n}{origin}: the busy processes did not start: "
                                    f"{exc}") from None


def _stop(config: pytest.Config) -> None:
    burners = config.stash.get(BURNERS_KEY, None)
    if burners is not None and SUMMARY_KEY not in config.stash:
        burners.stop()
        config.stash[SUMMARY_KEY] = {"workers": burners.workers, "cpu_s": round(burners.cpu_seconds(), 3)}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    _stop(session.config)


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop(config)
