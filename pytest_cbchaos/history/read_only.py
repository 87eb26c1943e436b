"""Read-only events: a history read from a file is a record of what happened, so its events do
not change after the reader has checked them, and a check may trust that check
(docs/linearizability-design.md#performance).

A :class:`ReadOnlyEvent` is a ``dict`` for every reader (``json``, ``dict(ev)``, ``ev.get``) but
refuses every change with a :class:`TypeError` that says how to get an editable copy.
"""

from __future__ import annotations

from typing import Any, NoReturn


class ReadOnlyEvent(dict):  # type: ignore[type-arg]
    """An event of a history as read; ``dict(ev)`` is an editable copy."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kw: Any) -> NoReturn:
        raise TypeError("this event belongs to a history as read and is read-only: edit a copy "
                        "(History([dict(ev) for ev in history.events]))")

    __setitem__ = __delitem__ = __ior__ = _refuse
    update = pop = popitem = clear = setdefault = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        """A copy or an unpickled event is a plain, editable dict."""
        return dict, (dict(self),)
