"""The request-body reader: Go's nesting limit and syntax errors, no Python exception escapes it."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_cbchaos.proxy.gojson import DecodeError, decode_struct, parse_first
from pytest_cbchaos.proxy.jsonscan import MAX_DEPTH, JsonSyntaxError, read_first

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20)
JSON_ALPHABET = st.sampled_from(list('[]{}:,"\\ -+.0123456789eEtrufalsn\t\n\x01\u00e9\ud800'))


def _python(text: str):
    """Python's reading of the first value, or None when it rejects the text."""
    def reject(name):
        raise ValueError(name)
    try:
        return (json.JSONDecoder(parse_constant=reject).raw_decode(text.lstrip(" \t\r\n"))[0],)
    except ValueError:
        return None


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@given(JSON_VALUES)
def test_reads_what_json_dumps_writes(value):
    text = json.dumps(value)
    assert read_first(text) == json.loads(text)


@settings(max_examples=400)
@given(st.lists(JSON_ALPHABET, max_size=30).map("".join))
def test_accepts_and_rejects_like_a_strict_reader(body):
    """Inside an array (no top-level number edge), the reader agrees with a strict Python reader."""
    text = "[" + body + "]"
    expected = _python(text)
    try:
        got = read_first(text)
    except JsonSyntaxError as exc:
        assert expected is None, f"rejected valid JSON {text!r}: {exc}"
        assert re.fullmatch(r"unexpected EOF|invalid character '.+' .+", str(exc)), str(exc)
        return
    assert expected is not None, f"accepted invalid JSON {text!r}"
    fixed = json.loads(re.sub(r"\\ud[89a-f][0-9a-f]{2}", r"\\ufffd", json.dumps(expected[0])))
    assert got == fixed


def test_nesting_limit_is_gos():
    value = read_first(_nested(MAX_DEPTH))
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == []
    with pytest.raises(JsonSyntaxError, match=r"^invalid character '\[' exceeded max depth$"):
        read_first(_nested(MAX_DEPTH + 1))
    with pytest.raises(JsonSyntaxError, match=r"^invalid character '\{' exceeded max depth$"):
        read_first('{"a":' * MAX_DEPTH + "{")


@pytest.mark.parametrize("raw, message", [
    (b"", "EOF"),
    (b" \n", "EOF"),
    (b'{"a":1', "unexpected EOF"),
    (b'{"a":NaN}', "invalid character 'N' looking for beginning of value"),
    (b'{"a":Infinity}', "invalid character 'I' looking for beginning of value"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    (b"[1 2]", "invalid character '2' after array element"),
    (b'{"a":1,}', "invalid character '}' looking for beginning of object key string"),
    (b'"\\q"', "invalid character 'q' in string escape code"),
    (b'"\\u12x4"', "invalid character 'x' in \\u hexadecimal character escape"),
    (b'"a\nb"', "invalid character '\\n' in string literal"),
    (b"-x", "invalid character 'x' in numeric literal"),
    (b"[1.]", "invalid character ']' after decimal point in numeric literal"),
    (b"[1e]", "invalid character ']' in exponent of numeric literal"),
    (b"tRue", "invalid character 'R' in literal true (expecting 'r')"),
])
def test_go_syntax_messages(raw, message):
    with pytest.raises(DecodeError) as info:
        parse_first(raw)
    assert str(info.value) == message


def test_first_value_only_and_replacement_characters():
    assert parse_first(b'{"a":1} trailing {') == {"a": 1}
    assert parse_first(b"0123") == 0
    assert parse_first(b'"\\ud800x"') == "\ufffdx"
    assert parse_first(b'"\xff"') == "\ufffd"


@pytest.mark.parametrize("number", [b"1e39", b"-1e39", b"1e400", b"1" * 5000])
def test_float32_overflow_is_a_type_error(number):
    value = parse_first(b'{"toxicity":' + number + b"}")
    with pytest.raises(DecodeError) as info:
        decode_struct(value, {"toxicity": "float32"}, "toxics.ToxicWrapper")
    assert str(info.value) == (f"json: cannot unmarshal number {number.decode()} into Go struct field "
                               "toxics.ToxicWrapper.toxicity of type float32")


def test_int_field_error_shows_the_literal():
    value = parse_first(b'{"latency":1e2}')
    with pytest.raises(DecodeError, match=r"^json: cannot unmarshal number 1e2 into Go struct field "
                                          r"toxics\.LatencyToxic\.latency of type int64$"):
        decode_struct(value, {"latency": "int64"}, "toxics.LatencyToxic")


def test_out_of_range_toxicity_is_stored_as_sent():
    """Toxiproxy 2.12 does not range-check toxicity (the fault controller does, docs/proxy.md)."""
    for value in (2.0, -0.5):
        assert decode_struct(parse_first(json.dumps({"toxicity": value}).encode()),
                             {"toxicity": "float32"}, "toxics.ToxicWrapper") == {"toxicity": value}
