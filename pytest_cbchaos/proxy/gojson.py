"""Go ``encoding/json`` look-alikes: struct decoding (case-insensitive keys, type errors) and encoding.

Toxiproxy decodes request bodies into Go structs; clients depend on its exact 400 messages and
on its output formatting (compact, HTML-escaped strings, float32 ``toxicity`` as the shortest
decimal that round-trips). Only what the API needs is reproduced.
"""

from __future__ import annotations

import json
import math
import struct
from decimal import Decimal
from typing import Any, Mapping

from pytest_cbchaos.proxy.jsonscan import JsonSyntaxError, Number, read_first


class DecodeError(ValueError):
    """Body not decodable into the target struct; ``str()`` is a Go-style decoder message."""


class Float32(float):
    """A float stored as Go float32 (encoded as the shortest round-tripping decimal)."""

    def __new__(cls, value: float) -> "Float32":
        return super().__new__(cls, struct.unpack("f", struct.pack("f", float(value)))[0])


def format_float32(value: float) -> str:
    f = Float32(value)
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError("unsupported float")
    if f == int(f) and abs(f) < 1e21:
        return str(int(f))
    for precision in range(1, 18):
        text = f"{f:.{precision}g}"
        if Float32(float(text)) == f:
            break
    absf = abs(f)
    if absf < 1e-6 or absf >= 1e21:
        mant, _, exp = f"{float(text):e}".partition("e")
        mant = mant.rstrip("0").rstrip(".")
        e = int(exp)
        return f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    return format(Decimal(text), "f")


def _escape(text: str) -> str:
    out = json.dumps(text, ensure_ascii=False)
    return (out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def encode(value: Any) -> str:
    """Compact JSON as Go's encoder writes it (dict insertion order is kept: pass sorted maps)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Float32):
        return format_float32(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float32(value) if value == Float32(value) else repr(value)
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_escape(str(k))}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__}")


def go_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse_first(raw: bytes) -> Any:
    """Read the first JSON value of ``raw`` (trailing bytes ignored, like ``json.Decoder``)."""
    try:
        return read_first(raw.decode("utf-8", errors="replace"))
    except JsonSyntaxError as exc:
        raise DecodeError(str(exc)) from None


# Field kinds: "string", "bool", "int64", "int" (Go's int), "float32", "object" (raw value kept),
# "any", and "struct:GO_TYPE" (an object or null, kept raw; anything else names GO_TYPE).
Fields = Mapping[str, str]
_GO_TYPES = {"string": "string", "bool": "bool", "int64": "int64", "int": "int", "float32": "float32",
             "object": "json.RawMessage"}


def _number_text(value: Any) -> str:
    if isinstance(value, Number):
        return value.text
    return repr(value) if isinstance(value, float) else str(value)


def convert_field(struct_name: str, field: str, kind: str, value: Any) -> Any:
    """Convert one JSON value to the field's Go type or raise a Go-style DecodeError.

    ``struct_name`` is the Go struct holding the field ("" for an anonymous struct) and
    ``field`` the JSON path from the decoded value ("attributes.latency"), as Go names them.
    """
    def fail() -> DecodeError:
        got = go_kind(value)
        shown = f"number {_number_text(value)}" if kind in ("int64", "int") and got == "number" else got
        go_type = kind[len("struct:"):] if kind.startswith("struct:") else _GO_TYPES.get(kind, kind)
        return DecodeError(f"json: cannot unmarshal {shown} into Go struct field {struct_name}.{field} of type {go_type}")

    if kind == "any" or kind == "object":
        return value
    if kind.startswith("struct:"):
        if not isinstance(value, dict):
            raise fail()
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise fail()
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise fail()
        return value
    if kind in ("int64", "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        if not -(2 ** 63) <= value < 2 ** 63:
            raise fail()
        return value
    if kind == "float32":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        overflow = DecodeError(f"json: cannot unmarshal number {_number_text(value)} into Go struct field "
                               f"{struct_name}.{field} of type float32")
        try:
            converted = Float32(value)
        except OverflowError:  # beyond float32's range: a type error in Go, as is inf (1e400)
            raise overflow from None
        if not math.isfinite(converted):
            raise overflow
        return converted
    raise fail()


def decode_fields(value: Any, fields: Fields, struct_name: str, go_type: str | None = None,
                  path: str = "") -> tuple[dict[str, Any], DecodeError | None]:
    """Decode a parsed JSON value onto a struct with ``fields``: the keys present that decoded,
    and the first type error in document order (Go keeps decoding past a type error, so the
    other fields are still set; the caller decides whether they are applied).

    Keys match case-insensitively, unknown keys are ignored, ``null`` leaves a field unchanged.
    ``path`` prefixes the field in messages when the struct sits under a key ("attributes.").
    """
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        return {}, DecodeError(f"json: cannot unmarshal {go_kind(value)} into Go value of type {go_type or struct_name}")
    lowered = {name.lower(): name for name in fields}
    out: dict[str, Any] = {}
    first_error: DecodeError | None = None
    for key, item in value.items():
        field = key if key in fields else lowered.get(key.lower())
        if field is None or item is None:
            continue
        try:
            out[field] = convert_field(struct_name, path + field, fields[field], item)
        except DecodeError as exc:
            first_error = first_error or exc
    return out, first_error


def decode_struct(value: Any, fields: Fields, struct_name: str, go_type: str | None = None,
                  path: str = "") -> dict[str, Any]:
    """:func:`decode_fields`, raising its first error."""
    out, error = decode_fields(value, fields, struct_name, go_type, path)
    if error is not None:
        raise error
    return out
