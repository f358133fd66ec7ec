"""PHP bracket-notation forms, read as PHP reads them into $_POST."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.errors import FormError
from trace_service.http.forms import MAX_FIELDS, parse_php_form

# Exactly what PHP 8.2's http_build_query produced on this machine (docs/php-compat.md §6).
PHP_BODY = ("event_key=auth_login_failure&severity=warning&metadata%5Buser_id%5D=5"
            "&metadata%5Btags%5D%5B0%5D=a&metadata%5Btags%5D%5B1%5D=b&metadata%5Bpassword%5D=hunter2")


def test_http_build_query_output_reads_as_php_would() -> None:
    assert parse_php_form(PHP_BODY) == {
        "event_key": "auth_login_failure", "severity": "warning",
        "metadata": {"user_id": "5", "tags": {"0": "a", "1": "b"}, "password": "hunter2"},
    }


@pytest.mark.parametrize(
    ("body", "parsed"),
    [
        ("metadata[tags][]=a&metadata[tags][]=b", {"metadata": {"tags": {"0": "a", "1": "b"}}}),
        ("a[user][id]=5&a[user][name]=Zo%C3%AB", {"a": {"user": {"id": "5", "name": "Zoë"}}}),
        ("a=1&a[b]=2", {"a": {"b": "2"}}),              # a later array replaces a scalar
        ("a[b]=2&a=1", {"a": "1"}),                      # and a later scalar an array
        ("a[5]=x&a[]=y", {"a": {"5": "x", "6": "y"}}),   # [] appends after the highest index
        ("msg=hello+world&empty=", {"msg": "hello world", "empty": ""}),
        ("weird[=1", {"weird[": "1"}),
        ("", {}),
    ],
)
def test_bracket_rules(body: str, parsed: dict[str, Any]) -> None:
    assert parse_php_form(body) == parsed


def test_limits_name_the_field() -> None:
    with pytest.raises(FormError, match="at most 1000"):
        parse_php_form("&".join(f"f{i}=1" for i in range(MAX_FIELDS + 1)))
    with pytest.raises(FormError, match="field 'deep' is nested"):
        parse_php_form("deep" + "[a]" * 70 + "=1")


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
values = st.text(max_size=20)
nested = st.recursive(values, lambda children: st.dictionaries(words, children, min_size=1, max_size=3),
                      max_leaves=10)


def build_query(data: dict[str, Any], prefix: str = "") -> list[str]:
    """PHP's http_build_query, for dicts of strings."""
    pairs = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else key
        if isinstance(value, dict):
            pairs.extend(build_query(value, name))
        else:
            pairs.append(f"{quote_plus(name)}={quote_plus(value)}")
    return pairs


@given(st.dictionaries(words, nested, max_size=4))
def test_round_trip_of_http_build_query(data: dict[str, Any]) -> None:
    assert parse_php_form("&".join(build_query(data))) == data


# ---------------------------------------------------------------- UTF-8: refused, never altered


@pytest.mark.parametrize(
    ("body", "field", "part"),
    [
        (b"event_key=a&metadata%5Bname%5D=Zo%EB", "metadata[name]", "value"),   # Latin-1, encoded
        (b"event_key=a&metadata[name]=Zo\xeb", "metadata[name]", "value"),      # and raw
        (b"event_key=a&metadata%5BZo%EB%5D=1", "metadata[Zo\\xeb]", "name"),      # in a key
        (b"event_key=a&metadata[Zo\xeb]=1", "metadata[Zo\\xeb]", "name"),
        (b"event_key=%C3", "event_key", "value"),                                # a truncated sequence
    ],
)
def test_a_byte_that_is_not_utf8_is_refused_naming_field_and_byte(body: bytes, field: str,
                                                                 part: str) -> None:
    with pytest.raises(FormError) as caught:
        parse_php_form(body)
    byte = "0xC3" if body.endswith(b"%C3") else "0xEB"
    assert f"form field '{field}': its {part} has the byte {byte}" in str(caught.value)
    assert "send UTF-8" in str(caught.value)


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


@given(st.dictionaries(names, st.binary(max_size=12), min_size=1, max_size=4),
       st.dictionaries(st.binary(min_size=1, max_size=6).filter(lambda b: not {*b"[]"} & {*b}),
                       st.binary(max_size=6), max_size=3))
def test_any_form_is_refused_or_its_decoded_values_round_trip_exactly(
    fields: dict[str, bytes], metadata: dict[bytes, bytes]
) -> None:
    pairs = [f"{name}={quote(value)}" for name, value in fields.items()]
    pairs += [f"metadata%5B{quote(key)}%5D={quote(value)}" for key, value in metadata.items()]
    every = [*fields.values(), *metadata, *metadata.values()]
    try:
        parsed = parse_php_form("&".join(pairs))
    except FormError:
        assert any(_not_utf8(raw) for raw in every)
        return
    assert not any(_not_utf8(raw) for raw in every)
    assert {name: parsed[name] for name in fields} == {n: v.decode() for n, v in fields.items()}
    if metadata:
        assert parsed["metadata"] == {k.decode(): v.decode() for k, v in metadata.items()}


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
