"""Metadata bytes must equal PHP's json_encode output (docs/php-compat.md §2, §6)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.errors import MetadataError
from governance.php import php_key
from trace_service.php_json import (
    encode_metadata,
    encode_snapshot,
    freeze,
    php_float,
    snapshot,
)


def php_encode(value: object) -> str | None:
    return encode_metadata(freeze(value))


# Bytes produced by PHP 8.2's json_encode on this machine (docs/php-compat.md §6).
@pytest.mark.parametrize(
    ("value", "php_bytes"),
    [
        (
            {"name": "Zoë", "city": "日本", "path": "a/b", "emoji": "😀"},
            '{"name":"Zo\\u00eb","city":"\\u65e5\\u672c","path":"a\\/b","emoji":"\\ud83d\\ude00"}',
        ),
        ({"a": 12.0}, '{"a":12}'),
        ({"a": 1e16}, '{"a":10000000000000000}'),
        ({"a": 1e22}, '{"a":1.0e+22}'),
        ({"a": -0.0}, '{"a":-0}'),
        ({"a": "\x7f"}, '{"a":"\x7f"}'),
        ({"a": "x\x7fy/\x7f"}, '{"a":"x\x7fy\\/\x7f"}'),
        ({"a": []}, '{"a":[]}'),
        ({"a": {}}, '{"a":[]}'),
        ({"a": {0: "x", 2: "y"}}, '{"a":{"0":"x","2":"y"}}'),
        ({"a": {0: "x", 1: "y"}}, '{"a":["x","y"]}'),
        ({"t": True, "f": False, "n": None}, '{"t":true,"f":false,"n":null}'),
        ({"ctl": "\n\t\x01\"\\"}, '{"ctl":"\\n\\t\\u0001\\"\\\\"}'),
        ({"html": "<a href='x'>&</a>"}, '{"html":"<a href=\'x\'>&<\\/a>"}'),
    ],
)
def test_encoding_matches_php_bytes(value: object, php_bytes: str) -> None:
    assert php_encode(value) == php_bytes


@pytest.mark.parametrize(
    ("number", "php_text"),
    [
        (0.1, "0.1"), (1.5, "1.5"), (-2.25, "-2.25"), (0.0, "0"), (100.0, "100"),
        (0.0001, "0.0001"), (0.00001, "1.0e-5"), (1.5e-7, "1.5e-7"),
        (123456789012345680.0, "1.2345678901234568e+17"), (1e17, "1.0e+17"),
        (1e18, "1.0e+18"), (12345678901234567.0, "12345678901234568"),
        (3.141592653589793, "3.141592653589793"), (-1e100, "-1.0e+100"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
    ],
)
def test_floats_are_written_as_php_writes_them(number: float, php_text: str) -> None:
    assert php_float(number) == php_text


@pytest.mark.parametrize("empty", [None, {}, []])
def test_empty_metadata_is_sql_null(empty: object) -> None:
    assert php_encode(empty) is None


def test_top_level_list_becomes_an_object_never_a_list() -> None:
    assert php_encode(["a", "b"]) == '{"0":"a","1":"b"}'
    assert php_encode({"0": "a", "1": "b"}) == '{"0":"a","1":"b"}'


def test_top_level_scalar_is_refused() -> None:
    with pytest.raises(MetadataError, match="wrap it in a dict"):
        encode_metadata(freeze("text"))


def test_non_finite_floats_become_null() -> None:
    assert php_encode({"a": math.nan, "b": math.inf, "c": -math.inf}) == '{"a":null,"b":null,"c":null}'


def test_cycles_and_excessive_depth_are_errors_not_crashes() -> None:
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    with pytest.raises(MetadataError, match="deeper than 512"):
        freeze(cyclic)


@pytest.mark.parametrize(
    ("key", "expected"),
    [(5, "5"), (True, "1"), (False, "0"), (None, ""), (2.7, "2"), ("k", "k")],
)
def test_keys_follow_php_array_key_casts(key: object, expected: str) -> None:
    assert php_key(key) == expected


def test_freeze_copies_so_later_mutation_does_not_leak_in() -> None:
    original = {"list": [1, {"deep": "before"}], "tuple": (1, 2), "bytes": b"\xffok"}
    frozen = freeze(original)
    original["list"][1]["deep"] = "after"  # type: ignore[index]
    original["list"].append(3)  # type: ignore[attr-defined]
    assert frozen == {"list": [1, {"deep": "before"}], "tuple": [1, 2], "bytes": "\ufffdok"}


def test_unknown_objects_become_their_text() -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing"

    assert php_encode({"x": Thing(), "s": {3}}) == '{"x":"thing","s":[3]}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


def _php_decoded_equal(decoded: object, original: object) -> bool:
    """json_decode(json_encode($x)) == $x, with PHP's list/dict and int/float identities."""
    if isinstance(original, dict) and original and all(k == str(i) for i, k in enumerate(original)):
        original = list(original.values())
    if isinstance(original, dict) and not original:
        original = []
    if isinstance(original, float) and isinstance(decoded, int):
        return float(decoded) == original
    if isinstance(original, list):
        return isinstance(decoded, list) and len(decoded) == len(original) and all(
            _php_decoded_equal(d, o) for d, o in zip(decoded, original, strict=True)
        )
    if isinstance(original, dict):
        return isinstance(decoded, dict) and list(decoded) == list(original) and all(
            _php_decoded_equal(decoded[k], original[k]) for k in original
        )
    return decoded == original and type(decoded) is type(original)


@given(st.dictionaries(st.text(), json_values, min_size=1, max_size=6))
def test_encoding_round_trips_through_a_json_parser(metadata: dict[str, object]) -> None:
    text = php_encode(metadata)
    assert text is not None
    assert text.startswith("{") and text.endswith("}")
    assert all(ord(ch) < 128 for ch in text)  # PHP's default escapes every non-ASCII character
    decoded = json.loads(text)
    assert list(decoded) == list(metadata)
    for key, value in metadata.items():
        assert _php_decoded_equal(decoded[key], value), key


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_php_float_text_reads_back_as_the_same_float(number: float) -> None:
    text = php_float(number)
    assert float(text) == number
    assert "e" not in text or ".0e" in text or "." in text.split("e")[0]


@given(st.text())
def test_strings_escape_slash_and_keep_del_raw(text: str) -> None:
    encoded = php_encode({"s": text})
    assert encoded is not None
    body = encoded[len('{"s":'):-1]
    assert "/" not in body.replace("\\/", "")
    assert json.loads(body) == text


def test_snapshot_is_a_deep_copy() -> None:
    original = {"list": [1, {"deep": "before"}], "n": 1.5}
    snap = snapshot(original)
    original["list"][1]["deep"] = "after"  # type: ignore[index]
    original["n"] = 2
    assert encode_snapshot(snap) == '{"list":[1,{"deep":"before"}],"n":1.5}'


def test_snapshot_refuses_a_scalar_at_the_top() -> None:
    with pytest.raises(MetadataError, match="got int: wrap it in a dict"):
        snapshot(5)


def test_snapshot_of_a_cycle_is_an_error_when_encoded() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(MetadataError, match="deeper than 512"):
        encode_snapshot(snapshot({"c": cyclic}))


def test_snapshot_falls_back_to_freeze_for_what_marshal_refuses() -> None:
    import enum
    from collections import OrderedDict

    class Level(enum.IntEnum):
        HIGH = 3

    value = OrderedDict(level=Level.HIGH, obj=object.__new__(type("Thing", (), {"__str__": lambda s: "t"})))
    assert isinstance(snapshot(value), dict)
    assert encode_snapshot(snapshot(value)) == '{"level":3,"obj":"t"}'


odd_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children)
    | st.frozensets(st.integers(), max_size=3)
    | st.dictionaries(st.text() | st.integers() | st.booleans() | st.none(), children, max_size=4),
    max_leaves=25,
)


@given(st.dictionaries(st.text(), odd_values, max_size=5))
def test_snapshot_path_equals_the_freeze_path(metadata: dict[str, object]) -> None:
    assert encode_snapshot(snapshot(metadata)) == encode_metadata(freeze(metadata))
