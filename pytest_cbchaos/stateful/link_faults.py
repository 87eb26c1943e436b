"""Link faults for the stream machines: one live fault per link, armed through the kit's
``FaultController`` and healed by name."""

from __future__ import annotations

from typing import Any


LINK_FAULTS = ("reset_peer", "down", "partition")


def arm_link_fault(faults: Any, proxy: Any, kind: str) -> Any:
    """A link fault of :data:`LINK_FAULTS` on ``proxy`` through the kit's ``FaultController``
    (``partition`` blackholes the downstream direction); returns the fault, healed by ``heal()``."""
    if kind == "reset_peer":
        return faults.reset_peer(proxy, timeout=0)
    if kind == "down":
        return faults.down(proxy)
    if kind == "partition":
        return faults.partition(proxy, "downstream")
    raise ValueError(f"unknown link fault {kind!r}; known: {', '.join(LINK_FAULTS)}")


def heal_links(active: dict[str, Any], link: str | None = None) -> None:
    """Heal ``link``'s fault (every fault when ``link`` is None) and forget it."""
    for name in [link] if link else list(active):
        f = active.pop(name, None)
        if f is not None:
            f.heal()
