"""Events in ``read_porcupine_kv``'s shape for generated histories (a module of its own, as
``lin_events``: test modules import it by name)."""

from __future__ import annotations

from typing import Any, Callable


def draw_invoke(draw: Callable[[Any], Any], st: Any, p: int, line: int) -> dict[str, Any]:
    """An invoke of a read, write or append on key ``a`` or ``b``, at ``line`` (time = index)."""
    f = draw(st.sampled_from(["read", "write", "append"]))
    return {"type": "invoke", "process": p, "f": f, "key": draw(st.sampled_from("ab")),
            "value": None if f == "read" else draw(st.sampled_from(["x", "y"])),
            "time": line, "index": line}
