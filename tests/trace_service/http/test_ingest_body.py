"""Request bodies to items: types, encodings, limits, and a clear error for each refusal."""

from __future__ import annotations

import gzip
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.errors import IngestError
from trace_service.http.ingest_body import BodyLimits, decode_body, parse_json

LIMITS = BodyLimits(max_bytes=10_000, max_items=3)


@pytest.mark.parametrize(
    ("body", "ctype", "items", "batch"),
    [
        (b'{"event_key":"a"}', "application/json", [{"event_key": "a"}], False),
        (b'[{"event_key":"a"},{"event_key":"b"}]', "application/json; charset=utf-8",
         [{"event_key": "a"}, {"event_key": "b"}], True),
        (b'{"event_key":"a"}', "application/x-www-form-urlencoded", [{"event_key": "a"}], False),
        (b'  [{"event_key":"a"}]', None, [{"event_key": "a"}], True),
        (b"event_key=a&metadata%5Bk%5D=v", "application/x-www-form-urlencoded",
         [{"event_key": "a", "metadata": {"k": "v"}}], False),
        (b'{"event_key":"a"}', "application/vnd.trace+json", [{"event_key": "a"}], False),
    ],
)
def test_accepted_bodies(body: bytes, ctype: str | None, items: list[object], batch: bool) -> None:
    assert decode_body(body, ctype, None, LIMITS) == (items, batch)


def test_gzip_bodies_are_decompressed() -> None:
    body = gzip.compress(b'{"event_key":"a"}')
    assert decode_body(body, "application/json", "gzip", LIMITS) == ([{"event_key": "a"}], False)


@pytest.mark.parametrize(
    ("body", "ctype", "encoding", "status", "message"),
    [
        (b"{bad", "application/json", None, 400, "not valid JSON"),
        (b'{"a":1,"a":2}', "application/json", None, 400, "has the key 'a' twice"),
        (b'{"event_key":NaN}', "application/json", None, 400, "NaN is not JSON"),
        (b'{"n":1e999999}', "application/json", None, 400, "1e999999 is out of range for a double"),
        (b'{"n":-' + b"9" * 1001 + b"}", "application/json", None, 400,
         "an integer of 1002 digits is too long"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", None, 413, "over 10000 bytes"),
        (b"[" * 5000 + b"]" * 5000, "application/json", None, 400, "nested too deeply"),
        (b'{"event_key":"\xff"}', "application/json", None, 400, "not valid UTF-8 at byte 14"),
        (b'"just a string"', "application/json", None, 400, "is a JSON str"),
        (b"[]", "application/json", None, 422, "the batch is empty"),
        (b"[{},{},{},{}]", "application/json", None, 413, "at most 3 per request"),
        (b"<xml/>", "application/xml", None, 415, "Content-Type 'application/xml' is not supported"),
        (b"event_key=a", None, None, 415, r"Content-Type '\(none\)'"),
        (b"x", "application/json", "br", 415, "Content-Encoding 'br' is not supported"),
        (b"not gzip", "application/json", "gzip", 400, "not valid gzip"),
        (gzip.compress(b"{}")[:-6], "application/json", "gzip", 400, "truncated"),
        (gzip.compress(b"[" + b"{}," * 20_000 + b"{}]"), "application/json", "gzip", 413,
         "decompressed body is over 10000 bytes"),
    ],
)
def test_refusals_name_the_problem(
    body: bytes, ctype: str | None, encoding: str | None, status: int, message: str
) -> None:
    with pytest.raises(IngestError, match=message) as caught:
        decode_body(body, ctype, encoding, LIMITS)
    assert caught.value.status == status


def test_a_gzip_bomb_is_stopped_at_the_limit_without_inflating_it_all() -> None:
    bomb = gzip.compress(b"0" * 50_000_000)
    with pytest.raises(IngestError) as caught:
        decode_body(bomb, "application/json", "gzip", LIMITS)
    assert caught.value.status == 413


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b"event_key=a&metadata%5Bname%5D=Zo%EB", None),
        (b"event_key=a&metadata[name]=Zo\xeb", None),
        (gzip.compress(b"event_key=a&metadata%5Bname%5D=Zo%EB"), "gzip"),
        (gzip.compress(b"event_key=a&metadata[name]=Zo\xeb"), "gzip"),
    ],
)
def test_a_latin1_form_is_refused_naming_the_field_gzip_or_not(body: bytes, encoding: str | None) -> None:
    with pytest.raises(IngestError, match=r"form field 'metadata\[name\]': its value has the byte "
                                          r"0xEB .* send UTF-8") as caught:
        decode_body(body, FORM, encoding, LIMITS)
    assert caught.value.status == 400


@pytest.mark.parametrize("ctype", [f"{FORM}; charset=ISO-8859-1", "application/json; charset=latin1",
                                   f'{FORM}; charset="windows-1252"'])
def test_a_charset_other_than_utf8_is_refused_with_415_naming_it(ctype: str) -> None:
    with pytest.raises(IngestError, match=r"charset .* is not supported: send the body in UTF-8") as caught:
        decode_body(b"event_key=a", ctype, None, LIMITS)
    assert caught.value.status == 415


@pytest.mark.parametrize("ctype", [f"{FORM}; charset=UTF-8", f'{FORM}; charset="utf8"',
                                   f"{FORM}; boundary=x"])
def test_utf8_charsets_and_other_parameters_are_accepted(ctype: str) -> None:
    body = b"event_key=a&metadata%5Bname%5D=Zo%C3%AB"
    assert decode_body(body, ctype, None, LIMITS) == ([{"event_key": "a", "metadata": {"name": "Zoë"}}],
                                                      False)


@given(st.dictionaries(st.text(alphabet="abcdefgh_", min_size=1, max_size=8), st.binary(max_size=12),
                       min_size=1, max_size=4), st.booleans())
def test_any_form_body_is_a_400_or_round_trips_exactly(fields: dict[str, bytes], gzipped: bool) -> None:
    body = "&".join(f"{name}={quote(value)}" for name, value in fields.items()).encode()
    try:
        expected = {name: value.decode("utf-8") for name, value in fields.items()}
    except UnicodeDecodeError:
        expected = None
    try:
        items, _ = decode_body(gzip.compress(body) if gzipped else body, FORM,
                               "gzip" if gzipped else None, BodyLimits())
    except IngestError as exc:
        assert exc.status == 400 and expected is None, exc.message
        return
    assert items == [expected]


@pytest.mark.parametrize(("body", "where"), [
    ('{"event_key": "a", "metadata": {"x": "\\ud800"}}', "'metadata.x'"),
    ('{"event_key": "a\\udfff"}', "'event_key'"),
    ('[{"event_key": "a"}, {"event_key": "b", "metadata": {"l": ["ok", "\\uDC00z"]}}]',
     "'[1].metadata.l[1]'"),
])
def test_an_unpaired_surrogate_is_refused_naming_where_it_is(body: str, where: str) -> None:
    with pytest.raises(IngestError) as caught:
        parse_json(body)
    assert caught.value.status == 400
    assert where in caught.value.message and "surrogate" in caught.value.message


def test_a_surrogate_pair_is_one_character_and_accepted() -> None:
    assert parse_json('{"e": "\\ud83d\\ude00"}') == {"e": "\U0001f600"}
