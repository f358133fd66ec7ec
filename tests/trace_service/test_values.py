"""Severity, timestamp and length rules (docs/php-compat.md §2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trace_service.layout import LAYOUT_A, LAYOUT_B, LAYOUT_B0, Layout
from trace_service.values import TimestampFormatter, normalise_severity, truncate


@pytest.mark.parametrize(
    ("given_value", "layout_a", "layout_b"),
    [
        ("info", "info", "info"),
        ("INFO", "info", "info"),
        (" Warn ", "warning", "warning"),
        ("warning", "warning", "warning"),
        ("notice", "info", "info"),
        ("debug", "debug", "info"),
        ("error", "error", "error"),
        ("critical", "error", "critical"),
        ("alert", "error", "critical"),
        ("emergency", "error", "critical"),
        (300, "warning", "warning"),
        ("550", "error", "critical"),
        (100, "debug", "info"),
    ],
)
def test_severity_is_folded_to_what_each_layout_accepts(
    given_value: object, layout_a: str, layout_b: str
) -> None:
    assert normalise_severity(given_value, LAYOUT_A) == (layout_a, True)
    assert normalise_severity(given_value, LAYOUT_B) == (layout_b, True)


@pytest.mark.parametrize("unknown", ["loud", "", None, 7, True, 3.5])
def test_unknown_severity_becomes_info_and_is_reported(unknown: object) -> None:
    assert normalise_severity(unknown, LAYOUT_A) == ("info", False)


@pytest.mark.parametrize("layout", [LAYOUT_A, LAYOUT_B, LAYOUT_B0])
@given(st.text(max_size=12) | st.integers())
def test_severity_is_always_allowed_by_the_layout(layout: Layout, value: object) -> None:
    severity, _known = normalise_severity(value, layout)
    assert severity in layout.severities


def test_timestamps_are_wall_clock_text_in_the_table_zone() -> None:
    instant = datetime(2026, 11, 24, 5, 17, 13, 739142, tzinfo=UTC)
    ns = int(instant.timestamp()) * 1_000_000_000 + 739142 * 1000
    assert TimestampFormatter("UTC").format_ns(ns) == "2026-11-24 05:17:13.739142"
    # Cairo is UTC+2 in November (docs/php-compat.md §6: PHP sent '2026-11-24 07:17:13.739142').
    assert TimestampFormatter("Africa/Cairo").format_ns(ns) == "2026-11-24 07:17:13.739142"


def test_timestamps_follow_daylight_saving_changes() -> None:
    cairo = TimestampFormatter("Africa/Cairo")
    # Egypt's summer time 2026 (EEST, UTC+3) ends on the last Thursday of October at 24:00.
    summer = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    winter = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
    assert cairo.format_datetime(summer) == "2026-10-01 12:00:00.000000"
    assert cairo.format_datetime(winter) == "2026-11-10 11:00:00.000000"


def test_the_per_second_cache_never_mixes_seconds() -> None:
    fmt = TimestampFormatter("Europe/Berlin")
    base = int(datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC).timestamp())
    for offset_ns in (0, 999_999_000, 1_000_000_000, 0, 3_600_000_000_000):
        ns = base * 1_000_000_000 + offset_ns
        expected = datetime.fromtimestamp(ns / 1e9, fmt.zone).strftime("%Y-%m-%d %H:%M:%S")
        assert fmt.format_ns(ns)[:19] == expected


def test_naive_datetimes_are_taken_as_the_table_zone_and_aware_ones_converted() -> None:
    fmt = TimestampFormatter("Africa/Cairo")
    assert fmt.format_datetime(datetime(2026, 1, 2, 3, 4, 5, 6)) == "2026-01-02 03:04:05.000006"
    aware = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    assert fmt.format_datetime(aware) == "2026-01-02 10:04:05.000000"


@given(st.text(max_size=400), st.integers(min_value=1, max_value=300))
def test_truncate_caps_length_and_keeps_prefix(text: str, limit: int) -> None:
    cut = truncate(text, limit)
    assert cut is not None and len(cut) <= limit and text.startswith(cut)
    assert cut == text or len(cut) == limit
