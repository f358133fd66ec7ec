"""The retention cut-off: never a row younger than the window, by either reading, in any zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.errors import PolicyError
from jobs.cutoff import format_wall, retention_cutoff

ZONES = ["UTC", "Africa/Cairo", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
         "America/Santiago", "Asia/Kolkata"]


def wall(instant: datetime, zone: str) -> datetime:
    return instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None, fold=0)


@pytest.mark.parametrize(("now", "zone", "expected"), [
    # No DST anywhere near: exactly 30 x 24 hours.
    (datetime(2026, 7, 15, 12, tzinfo=UTC), "UTC", "2026-06-15 12:00:00.000000"),
    # Cairo left summer time on 2026-10-29: 30 calendar days back is one hour earlier than
    # 720 hours back, so the calendar reading (the older one) wins.
    (datetime(2026, 11, 24, 12, tzinfo=UTC), "Africa/Cairo", "2026-10-25 14:00:00.000000"),
    # Berlin fell back at 2026-10-25 01:00 UTC, half an hour into the window: the cut-off
    # (01:30 CEST, 30 calendar days) is below the repeated hour 02:00-03:00, so no row of
    # that hour's second pass (younger than the window) can compare below it.
    (datetime(2026, 11, 24, 0, 30, tzinfo=UTC), "Europe/Berlin", "2026-10-25 01:30:00.000000"),
    # New York sprang forward on 2026-03-08: 720 hours back is an hour before the calendar.
    (datetime(2026, 3, 20, 16, tzinfo=UTC), "America/New_York", "2026-02-18 11:00:00.000000"),
])
def test_cutoff_is_the_older_reading_and_the_lowest_wall_clock(now: datetime, zone: str,
                                                                expected: str) -> None:
    assert format_wall(retention_cutoff(now, 30, zone)) == expected


def test_a_long_window_starting_just_before_a_fall_back_keeps_the_repeated_hour() -> None:
    # 300 days back from 2026-08-22 00:30 UTC is 2025-10-26 00:30 UTC (02:30 CEST); Berlin fell
    # back half an hour later, so 02:00-02:30 CET came again inside the window. Spring-forward
    # in March cancels the shift, so the calendar reading is 02:30 too: only the lowest
    # wall-clock reading (02:00) keeps those younger second-pass rows.
    cutoff = retention_cutoff(datetime(2026, 8, 22, 0, 30, tzinfo=UTC), 300, "Europe/Berlin")
    assert format_wall(cutoff) == "2025-10-26 02:00:00.000000"


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        retention_cutoff(datetime(2026, 1, 1), 30, "UTC")


def test_a_window_below_one_day_is_refused() -> None:
    with pytest.raises(PolicyError, match="days = 0"):
        retention_cutoff(datetime(2026, 1, 1, tzinfo=UTC), 0, "UTC")


@settings(max_examples=60, deadline=None)
@given(
    now=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31),
                     timezones=st.just(UTC)),
    days=st.one_of(st.integers(min_value=1, max_value=45), st.integers(min_value=150, max_value=400)),
    zone=st.sampled_from(ZONES),
)
def test_no_instant_inside_the_window_shows_a_wall_clock_below_the_cutoff(
        now: datetime, days: int, zone: str) -> None:
    cutoff = retention_cutoff(now, days, zone)
    start = now - timedelta(days=days)
    # Every 10 minutes across the window's first and last days and hourly between: a row
    # written at any of these instants is younger than the window and must compare >= the
    # cut-off. By the calendar reading too: its wall clock is within `days` of now's.
    instant = start
    while instant <= now:
        assert wall(instant, zone) >= cutoff, (instant, zone)
        near_end = instant - start < timedelta(days=2) or now - instant < timedelta(days=2)
        instant += timedelta(minutes=10 if near_end else 60)
    assert cutoff <= wall(now, zone) - timedelta(days=days)
    assert wall(now, zone) >= cutoff
    # And the cut-off is not needlessly early: within the DST shift (and a repeated hour).
    assert cutoff >= wall(start - timedelta(hours=2, minutes=1), zone)
    assert cutoff.replace(tzinfo=ZoneInfo(zone)) <= now
