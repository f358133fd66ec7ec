"""PHP bracket-notation forms, read as PHP reads them into $_POST."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trace_service.forms import MAX_FIELDS, FormError, parse_php_form

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
