"""An iterative JSON reader with Go ``encoding/json``'s limits and syntax error messages.

Toxiproxy reads request bodies with ``json.Decoder``: nesting up to 10000 levels is valid
(deeper is a syntax error), only the first value is read, lone surrogates and invalid UTF-8
become U+FFFD. Python's ``json`` recurses (a deep body raised ``RecursionError``) and accepts
``NaN``/``Infinity``; this reader keeps an explicit stack instead (docs/proxy.md).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 10000  # Go's maxNestingDepth
_WS = " \t\r\n"
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STRING_BODY = re.compile(r'(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*')
_SURROGATE = re.compile("[\ud800-\udfff]")
_LITERALS = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}
# after a value inside a container: (closing bracket, Go's error context, state after a comma)
_AFTER = {"after_element": ("]", "after array element", "value"),
          "after_pair": ("}", "after object key:value pair", "key")}
_INT_DIGITS = 4000  # below Python's int-from-text limit; longer integers are read as floats


class Number(float):
    """A JSON number with a fraction or exponent; keeps its literal for Go-style type errors."""

    text: str

    def __new__(cls, text: str) -> "Number":
        number = super().__new__(cls, text)
        number.text = text
        return number


class JsonSyntaxError(ValueError):
    """Not valid JSON; ``str()`` is the message Go's decoder gives for the same bytes."""


def _quote(c: str) -> str:
    if c == "'":
        return "'\\''"
    return "'\"'" if c == '"' else repr(c)


def _bad(text: str, pos: int, context: str) -> JsonSyntaxError:
    if pos >= len(text):
        return JsonSyntaxError("unexpected EOF")
    return JsonSyntaxError(f"invalid character {_quote(text[pos])} {context}")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _string(text: str, pos: int) -> tuple[str, int]:
    """The string starting at the quote ``text[pos]``; returns it and the position after it."""
    end = _STRING_BODY.match(text, pos + 1).end()  # type: ignore[union-attr]
    if end >= len(text):
        raise JsonSyntaxError("unexpected EOF")
    if text[end] == '"':
        value = json.loads(text[pos:end + 1])
        return _SURROGATE.sub("\ufffd", value), end + 1
    if text[end] != "\\":
        raise _bad(text, end, "in string literal")
    if end + 1 < len(text) and text[end + 1] == "u":
        bad = end + 2
        while bad < len(text) and text[bad] in "0123456789abcdefABCDEF":
            bad += 1
        raise _bad(text, bad, "in \\u hexadecimal character escape")
    raise _bad(text, end + 1, "in string escape code")


def _number(text: str, pos: int) -> tuple[int | float, int]:
    match = _NUMBER.match(text, pos)
    if match is None:  # a lone '-'
        raise _bad(text, pos + 1, "in numeric literal")
    end = match.end()
    if end < len(text) and text[end] == ".":
        raise _bad(text, end + 1, "after decimal point in numeric literal")
    if end < len(text) and text[end] in "eE":
        after = end + 1 + (end + 1 < len(text) and text[end + 1] in "+-")
        raise _bad(text, after, "in exponent of numeric literal")
    token = match.group()
    if any(c in token for c in ".eE") or len(token) > _INT_DIGITS:
        return Number(token), end  # may be inf; field conversion rejects it like Go's overflow
    return int(token), end


def _literal(text: str, pos: int) -> tuple[Any, int]:
    word, value = _LITERALS[text[pos]]
    for i, expected in enumerate(word[1:], 1):
        if pos + i >= len(text):
            raise JsonSyntaxError("unexpected EOF")
        if text[pos + i] != expected:
            raise _bad(text, pos + i, f"in literal {word} (expecting {_quote(expected)})")
    return value, pos + len(word)


def _scalar(text: str, pos: int) -> tuple[Any, int]:
    c = text[pos]
    if c == '"':
        return _string(text, pos)
    if c == "-" or "0" <= c <= "9":
        return _number(text, pos)
    if c in _LITERALS:
        return _literal(text, pos)
    raise _bad(text, pos, "looking for beginning of value")


def read_first(text: str) -> Any:
    """The first JSON value of ``text`` (what follows it is not read, as with ``json.Decoder``)."""
    pos = _skip(text, 0)
    if pos >= len(text):
        raise JsonSyntaxError("EOF")
    stack: list[list[Any] | dict[str, Any]] = []
    key = ""
    state = "value"
    while True:
        pos = _skip(text, pos)
        if pos >= len(text):
            raise JsonSyntaxError("unexpected EOF")
        c = text[pos]
        top = stack[-1] if stack else None
        if state in ("key", "key_or_end"):
            if c == "}" and state == "key_or_end":
                value, pos = stack.pop(), pos + 1
            elif c == '"':
                key, pos = _string(text, pos)
                state = "colon"
                continue
            else:
                raise _bad(text, pos, "looking for beginning of object key string")
        elif state == "colon":
            if c != ":":
                raise _bad(text, pos, "after object key")
            pos, state = pos + 1, "value"
            continue
        elif state in _AFTER:
            closer, context, next_state = _AFTER[state]
            if c == ",":
                pos, state = pos + 1, next_state
                continue
            if c != closer:
                raise _bad(text, pos, context)
            value, pos = stack.pop(), pos + 1
        elif state == "value_or_end" and c == "]":
            value, pos = stack.pop(), pos + 1
        elif c in "[{":
            container: list[Any] | dict[str, Any] = [] if c == "[" else {}
            _attach(top, key, container)
            stack.append(container)
            if len(stack) > MAX_DEPTH:
                raise _bad(text, pos, "exceeded max depth")
            pos, state = pos + 1, ("value_or_end" if c == "[" else "key_or_end")
            continue
        else:
            value, pos = _scalar(text, pos)
            _attach(top, key, value)
        if not stack:
            return value
        state = "after_element" if isinstance(stack[-1], list) else "after_pair"


def _attach(parent: list[Any] | dict[str, Any] | None, key: str, value: Any) -> None:
    if isinstance(parent, list):
        parent.append(value)
    elif parent is not None:
        parent[key] = value
