"""The stream entry format (pure): a round trip gives back the trace, and what is not an entry of
this format is refused with a reason; assigned event ids are time-ordered UUIDs (version 7)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.errors import TraceInputError
from trace_service.layout import LAYOUT_A
from trace_service.php_json import EncodedMetadata, encode_metadata
from trace_service.queue import TraceItem
from trace_service.sink import build_row
from trace_service.stream_entry import decode_entry, encode_entry, new_event_id
from trace_service.values import TimestampFormatter

# What the masker returns: dicts with string keys, lists, strings (lone surrogates included:
# json escapes them), ints of any size, finite floats, booleans and None.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300)
@given(metadata=st.none() | st.dictionaries(st.text(), JSON, max_size=5),
       when=st.integers(0, 2**63 - 1) | st.datetimes(timezones=st.none() | st.just(UTC)),
       key=st.text(min_size=1, max_size=20), severity=st.sampled_from(["info", "warning", 3]),
       actor=st.none() | st.integers(0, 2**63 - 1), text=st.none() | st.text(max_size=20))
def test_an_entry_gives_back_the_trace_it_was_made_of(metadata: Any, when: Any, key: str, severity: Any,
                                                       actor: int | None, text: str | None) -> None:
    item = TraceItem(key, severity, actor, text, text, text, text, None, when, new_event_id())
    encoded = encode_metadata(metadata)
    back = decode_entry(encode_entry(item, encoded))
    assert back._replace(metadata=None) == item
    assert back.metadata == EncodedMetadata(encoded)


@given(metadata=st.dictionaries(st.text(), JSON, min_size=1, max_size=5))
def test_a_version_1_entry_queued_before_an_upgrade_is_still_read_and_stored_alike(metadata: Any) -> None:
    """A v1 entry held the masked value; the sink encodes it into the same row as a v2 entry's."""
    item = TraceItem("k", "info", 7, None, None, None, "req", None, 1_700_000_000_000_000_000,
                     new_event_id())
    v2 = encode_entry(item, encode_metadata(metadata))
    body = json.loads(v2)
    del body["M"]
    v1 = json.dumps({**body, "v": 1, "m": metadata}).encode()
    layout, zone = LAYOUT_A, TimestampFormatter("UTC")
    assert build_row(decode_entry(v1), layout, zone) == build_row(decode_entry(v2), layout, zone)


@pytest.mark.parametrize("data", [b"", b"{not json", b"[]", b'{"v": 2}', b'{"v": 1}',
                                  b'{"v": 3, "k": "x", "n": 1}', b'{"v": 2, "k": "x", "n": 1, "M": 5}',
                                  b'{"v": 2, "k": "x", "n": 1, "M": null, "e": [1], "s": "info", "a": null,'
                                  b' "ip": null, "ua": null, "r": null, "q": null}',
                                  b'{"v": 1, "k": 5, "n": 1}', b'{"v": 1, "k": "x", "n": "soon"}',
                                  b"{\"v\": 1, \"k\": \"\\ud800\"}" + b"\xff"])
def test_what_is_not_an_entry_is_refused_with_a_reason(data: bytes) -> None:
    with pytest.raises(TraceInputError, match="trace entry"):
        decode_entry(data)


def test_an_entry_is_read_as_utf8_only() -> None:
    # What the endpoint writes (UTF-8, in fact ASCII) is read; the same entry in UTF-16, which
    # json.loads of bytes would have guessed, is not an entry of this format.
    text = ('{"v": 2, "k": "x", "n": 1, "M": null, "e": null, "s": "info", "a": null, '
            '"ip": null, "ua": null, "r": null, "q": null}')
    assert decode_entry(text.encode()).event_key == "x"
    with pytest.raises(TraceInputError, match="not a trace entry: UnicodeDecodeError"):
        decode_entry(text.encode("utf-16"))


def test_assigned_event_ids_are_uuid7_carrying_the_time_and_sort_by_it() -> None:
    before = time.time_ns() // 1_000_000
    first = new_event_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(first)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert before <= parsed.int >> 80 <= after
    time.sleep(0.002)
    later = [new_event_id() for _ in range(100)]
    assert all(first < other for other in later)  # a later millisecond sorts after, as text
    assert len(set(later)) == 100


def test_an_aware_occurred_at_keeps_its_offset() -> None:
    when = datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    item = TraceItem("x", "info", None, None, None, None, None, None, when, new_event_id())
    assert decode_entry(encode_entry(item, None)).when == when
