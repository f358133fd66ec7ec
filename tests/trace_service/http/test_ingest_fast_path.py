"""load_trace's fast path: marshmallow's result for plainly valid traces, marshmallow for the rest;
and the body's decoder and the answer's encoder, built once, against json.loads and Flask.

The fast path may only decline, never decide differently: for items near every boundary of the
schema, load_trace and ``TRACE_SCHEMA.load`` must return the same keys in the same order with
values of the same type, equal (a datetime with the same tzinfo), and the same metadata object;
or both raise with the same messages. And the typical trace must really take the fast path.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import uuid
from datetime import UTC, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from hypothesis import event, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from governance.errors import IngestError
from trace_service.http import ingest_body
from trace_service.http.ingest import compact_json_encoder, json_answer
from trace_service.http.ingest_schema import _PLAIN_IPV4, MAX_ACTOR_ID, TRACE_SCHEMA, _fast_load, load_trace

TYPICAL: dict[str, Any] = {
    "event_key": "auth.login.attempt", "severity": "info", "actor_admin_id": 7,
    "route_name": "admins.list", "metadata": {"username": "alice", "outcome": "ok"},
}
UUID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
TYPICAL_FULL: dict[str, Any] = {
    **TYPICAL, "request_id": UUID, "ip_address": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "event_id": UUID, "occurred_at": "2026-11-24 07:17:13.739142",
}

# -- values near every boundary, valid and invalid -------------------------------------------------

# Control characters _PRINTABLE refuses, and neighbours it takes (NEL, LS, NBSP, DEL's successor).
SPECIALS = ["\n", "\r", "\t", "\x00", "\x1f", "\x7f", "\x80", "\x85", "\u2028", "\xa0", " ", "é",
            "\U0001f600"]


def _text(length: int, fill: str, special: str, where: str) -> str:
    """``length`` characters of ``fill``, one of them ``special`` at ``where``."""
    if not special or length == 0:
        return fill * length
    body = fill * (length - 1)
    half = len(body) // 2
    return {"start": special + body, "middle": body[:half] + special + body[half:],
            "end": body + special}[where]


def sized_text(limit: int) -> st.SearchStrategy[str]:
    """Strings of length 0, 1, limit-1, limit, limit+1, some with a special character."""
    return st.builds(
        _text, st.sampled_from([0, 1, 2, limit - 1, limit, limit + 1]),
        st.sampled_from(["a", "é", "\U0001f600", "."]),
        st.sampled_from(["", "", *SPECIALS]), st.sampled_from(["start", "middle", "end"]),
    )


# Neither str nor None: marshmallow's String decodes bytes, refuses the rest.
NOT_STR = st.sampled_from([5, 0, 2.5, True, False, b"abc", b"\xff", [], {}, ["a"]])


def names(limit: int) -> st.SearchStrategy[Any]:
    return (sized_text(limit) | st.text(max_size=limit + 2) | NOT_STR | st.none()
            | st.sampled_from(["abc\n", "abc\n\n", "\n", "abc\r\n", "a\tb", "a\x7f", "ok", ""]))


severities: st.SearchStrategy[Any] = st.sampled_from(
    ["info", "WARN", "", "i", "x" * 20, "x" * 21, "\n", 0, 1, 300, -1, 2**70, True, False, None, 2.0,
     [], {}, b"info"]) | st.integers() | st.text(max_size=22)

actor_ids: st.SearchStrategy[Any] = st.sampled_from(
    ["007", "7", "0", "+5", " 5", "5 ", "\u0665", "\uff15", "\u00b9", "", "-1", "1e3", "1_000", "5.0",
     str(MAX_ACTOR_ID), str(MAX_ACTOR_ID + 1), "0" * 10, "0" * 11 + "7", "9" * 11, "1" * 5000,
     0, 7, MAX_ACTOR_ID, MAX_ACTOR_ID + 1, -1, 2**64, 2.0, 2.5, -0.0, 1e300, math.nan, math.inf,
     True, False, None, b"7", [7]]
) | st.integers(-3, 2**32) | st.text(alphabet="0123456789 +-", max_size=12) | st.floats()

metadatas = st.sampled_from(
    [{}, {"a": 1}, [], [1], None, '{"a": 1}', "[]", "  ", "", "null", "{bad", "5", '"x"', 5, 5.0,
     True, b"{}"]
) | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3)

ip_addresses = st.sampled_from(
    ["10.0.0.1", "0.0.0.0", "255.255.255.255", "256.0.0.1", "1.2.3", "1.2.3.4.5", "01.2.3.4",
     "1.2.3.04", "00.0.0.0", " 10.0.0.1", "10.0.0.1\n", "10.0.0.1 ", "1.2.3.\u0664", "", "::1", "::",
     "2001:db8::1", "fe80::1%eth0", "::ffff:1.2.3.4", "2001:DB8::1", ":::", "10.0.0.1/32",
     None, 167772161, b"10.0.0.1", 5.0]
) | st.ip_addresses().map(str) | st.text(alphabet="0123456789.:abcdef%", max_size=20)

ZONES = st.sampled_from([None, UTC, timezone(timedelta(hours=2)),
                         timezone(timedelta(hours=-5, minutes=-30))])
occurred_ats = st.sampled_from(
    ["2026-11-24T05:17:13Z", "2026-11-24T05:17:13z", "2026-11-24T07:17:13+02:00", "2026-11-24T07:17:13",
     "2026-11-24 07:17:13.739142", " 2026-11-24 07:17:13 ", "2026-11-24", "20261124T051713Z",
     "2026-11-24T07:17:13.1234567Z", "2026-13-01T00:00:00", "2026-02-30 00:00:00", "yesterday", "",
     "2026-11-24T07:17:13+25:00", "2026-11-24T24:00:00", None, 5, b"2026-11-24"]
) | st.builds(lambda moment, sep: moment.isoformat(sep=sep), st.datetimes(timezones=ZONES),
              st.sampled_from(["T", " "])) | st.text(max_size=30)


def _uuid_forms(value: uuid.UUID) -> st.SearchStrategy[Any]:
    text = str(value)
    return st.sampled_from([text, text.upper(), "{" + text + "}", value.hex, "urn:uuid:" + text,
                            " " + text, text[:-1], text + "0", text.replace("-", "_"),
                            "_" + value.hex[1:], value.bytes, value])


event_ids = (st.uuids().flatmap(_uuid_forms)
             | st.sampled_from(["nope", "", "0" * 32, None, 5, b"short"]) | st.text(max_size=40))

UNKNOWN_KEYS = st.sampled_from(["unexpected", "Event_key", "eventKey", "", "metadata ", "id"])

FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "event_key": names(255),
    "severity": severities,
    "actor_admin_id": actor_ids,
    "route_name": names(255),
    "request_id": names(64),
    "ip_address": ip_addresses,
    "user_agent": sized_text(4096) | st.text(max_size=30) | NOT_STR | st.none(),
    "metadata": metadatas,
    "occurred_at": occurred_ats,
    "event_id": event_ids,
}


@st.composite
def mixed_items(draw: st.DrawFn) -> dict[str, Any]:
    """Any subset of the fields, each valid or not, sometimes an unknown key."""
    item: dict[str, Any] = {}
    for key, values in FIELDS.items():
        if key == "event_key" or draw(st.booleans()):  # event_key missing below, less often
            # Half the values typical ("|" would make it one in a few dozen), so that enough
            # items are wholly valid to reach the fast path.
            item[key] = TYPICAL_FULL[key] if draw(st.booleans()) else draw(values)
    if draw(st.integers(0, 19)) == 0:
        del item["event_key"]
    if draw(st.integers(0, 9)) == 0:
        item[draw(UNKNOWN_KEYS)] = draw(st.none() | st.integers())
    return item


@st.composite
def near_typical_items(draw: st.DrawFn) -> dict[str, Any]:
    """A typical trace with one field changed, dropped or added: one check at a time."""
    item = dict(draw(st.sampled_from([TYPICAL, TYPICAL_FULL])))
    item["metadata"] = dict(item["metadata"])  # a fresh object per example, for the identity check
    change = draw(st.sampled_from([*FIELDS, "drop", "unknown"]))
    if change == "drop":
        del item[draw(st.sampled_from(sorted(item)))]
    elif change == "unknown":
        item[draw(UNKNOWN_KEYS)] = draw(st.none() | st.text(max_size=5))
    else:
        item[change] = draw(FIELDS[change])
    return item


# -- the comparison ------------------------------------------------------------------------------


def _marshmallow(item: dict[str, Any]) -> dict[str, Any] | ValidationError:
    try:
        result: dict[str, Any] = TRACE_SCHEMA.load(item)
    except ValidationError as exc:
        return exc
    return result


def assert_same(result: dict[str, Any], expected: dict[str, Any], item: dict[str, Any]) -> None:
    assert list(result) == list(expected)
    for key, value in expected.items():
        got = result[key]
        # Type, value and repr: a datetime's repr shows its tzinfo, which == ignores across zones.
        assert (type(got), got, repr(got)) == (type(value), value, repr(value)), key
    # Both hand back posted metadata as the object itself (the caller masks it in place); a JSON
    # string is parsed into a new object by each load.
    posted = item.get("metadata")
    if isinstance(posted, (dict, list)):
        assert result["metadata"] is posted
        assert expected["metadata"] is posted
    assert result is not item


def check(item: dict[str, Any]) -> str:
    """load_trace and the fast path against marshmallow; "refused", "declined" or "fast"."""
    expected = _marshmallow(item)
    fast = _fast_load(item)
    if isinstance(expected, ValidationError):
        assert fast is None, f"fast path took an item marshmallow refuses: {expected.messages}"
        with pytest.raises(ValidationError) as raised:
            load_trace(item)
        assert raised.value.messages == expected.messages
        return "refused"
    if fast is not None:
        assert_same(fast, expected, item)
    assert_same(load_trace(item), expected, item)
    return "declined" if fast is None else "fast"


@settings(max_examples=3000, deadline=None)
@given(mixed_items())
def test_mixed_items_load_as_marshmallow_loads_them(item: dict[str, Any]) -> None:
    # --hypothesis-show-statistics shows how often the fast path was taken (it must be, to be tested).
    event(check(item))


@settings(max_examples=3000, deadline=None)
@given(near_typical_items())
def test_typical_items_with_one_change_load_as_marshmallow_loads_them(item: dict[str, Any]) -> None:
    event(check(item))


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(["0", "1", "2", "5", "9", "00", "01", "25", "99", "199", "249", "250",
                                 "255", "256", "300", "999", "0255", "", " 1", "\u0661"]),
                min_size=3, max_size=5).map(".".join))
def test_plain_ipv4_shortcut_only_takes_addresses_ipaddress_takes(text: str) -> None:
    if _PLAIN_IPV4.fullmatch(text) is not None:
        ipaddress.ip_address(text)


@given(st.ip_addresses(v=4).map(str))
def test_plain_ipv4_shortcut_takes_canonical_addresses(text: str) -> None:
    assert _PLAIN_IPV4.fullmatch(text) is not None


# -- the fast path is taken, and declines the tricky -----------------------------------------------


@pytest.mark.parametrize("item", [
    TYPICAL,
    TYPICAL_FULL,
    {**TYPICAL_FULL, "ip_address": "2001:db8::1", "occurred_at": "2026-11-24T05:17:13Z"},
    {**TYPICAL, "actor_admin_id": "7", "metadata": []},
    {"event_key": "a"},
    {"event_key": "a", "severity": 300, "actor_admin_id": None, "metadata": None, "event_id": None},
], ids=["typical", "typical-full", "ipv6-zulu", "php-digits-empty-list", "minimal", "nulls"])
def test_typical_traces_take_the_fast_path(item: dict[str, Any]) -> None:
    fast = _fast_load(item)
    assert fast is not None  # if this fails, the speed-up is gone
    expected = _marshmallow(item)
    assert not isinstance(expected, ValidationError)
    assert_same(fast, expected, item)


@pytest.mark.parametrize("change", [
    {"event_key": "abc\n"},  # _PRINTABLE takes it ("$" before a final newline): marshmallow says so
    {"route_name": "a\tb"},
    {"event_key": "x" * 256},
    {"unexpected": 1},
    {"actor_admin_id": True},
    {"actor_admin_id": 2.0},
    {"actor_admin_id": " 5"},
    {"severity": False},
    {"severity": None},
    {"metadata": '{"a": 1}'},
    {"event_id": "{" + UUID + "}x"},
    {"event_id": uuid.UUID(UUID)},
    {"ip_address": b"10.0.0.1"},
    {"occurred_at": "yesterday"},
], ids=repr)
def test_the_fast_path_declines_what_it_is_not_certain_of(change: dict[str, Any]) -> None:
    item = {**TYPICAL, **change}
    assert _fast_load(item) is None
    check(item)


def test_a_dict_subclass_is_left_to_marshmallow() -> None:
    class Item(dict[str, Any]):
        pass

    assert _fast_load(Item(TYPICAL)) is None
    assert _fast_load({key: value for key, value in TYPICAL.items() if key != "event_key"}) is None


def test_metadata_is_the_posted_object_on_both_paths() -> None:
    # The ingest masks the loaded metadata in place (owned=True): both paths must alias alike.
    for metadata in ({"a": {"b": 1}}, [1, 2]):
        item = {**TYPICAL, "metadata": metadata}
        assert TRACE_SCHEMA.load(item)["metadata"] is metadata
        assert load_trace(item)["metadata"] is metadata
        # The top-level dict is new on both: changing the result leaves the posted item alone.
        assert TRACE_SCHEMA.load(item) is not item
        assert load_trace(item) is not item


@pytest.mark.parametrize("field", ["event_key", "route_name", "request_id"])
def test_a_final_newline_is_a_control_character_too(field: str) -> None:
    # The OpenAPI document's pattern refuses it; the schema's regex once ended in "$", which
    # matches before a final newline, so "abc\n" was accepted.
    item = {"event_key": "auth.login", field: "abc\n"}
    with pytest.raises(ValidationError) as refused:
        load_trace(item)
    messages = refused.value.messages
    assert isinstance(messages, dict) and "control characters" in str(messages[field])


# -- the body's decoder and the answer's encoder, each built once ----------------------------------

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
# Documents near the decoder's edges: a BOM, NaN, big numbers, duplicate keys, junk, surrogates.
_JSON_TEXTS = st.one_of(
    _JSON_VALUES.map(lambda value: json.dumps(value, allow_nan=True)),
    st.lists(st.sampled_from(['{', '}', '[', ']', '"a"', ':', ',', '1', '1e999', '-0', 'NaN',
                              'Infinity', '1.5', '"\\ud800"', '\ufeff', ' ', 'null', 'tru', '9' * 30]),
             max_size=10).map("".join),
    st.text(max_size=20),
)


def _outcome(parse: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", parse(text)
    except json.JSONDecodeError as exc:
        return "json", (exc.msg, exc.pos)
    except IngestError as exc:
        return "ingest", (exc.status, exc.message)


@settings(max_examples=1000, deadline=None)
@given(_JSON_TEXTS)
def test_the_decoder_built_once_decides_as_json_loads_with_the_same_hooks(text: str) -> None:
    slow = functools.partial(json.loads, object_pairs_hook=ingest_body._no_duplicates,
                             parse_constant=ingest_body._refuse_constant,
                             parse_float=ingest_body._finite_float, parse_int=ingest_body._bounded_int)
    fast, expected = _outcome(ingest_body._loads, text), _outcome(slow, text)
    if fast[0] == "value" and expected[0] == "value":  # NaN != NaN: compare the JSON of both
        assert json.dumps(fast[1]) == json.dumps(expected[1])
    else:
        assert fast == expected


def _answer_app(debug: bool = False) -> Flask:
    app = Flask("answer")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["trace_json_encoder"] = compact_json_encoder(app)
    app.debug = debug
    return app


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=6), st.sampled_from([202, 422]),
       st.booleans())
def test_the_answer_is_flasks_byte_for_byte(body: dict[str, Any], status: int, debug: bool) -> None:
    app = _answer_app(debug)
    with app.test_request_context():
        ours = app.make_response(json_answer(app, body, status))
        flasks = app.make_response((body, status))
    assert (ours.get_data(), ours.status, list(ours.headers)) == \
        (flasks.get_data(), flasks.status, list(flasks.headers))
