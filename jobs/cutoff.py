"""The retention cut-off: the wall-clock time in the table's zone below which rows may go.

Pure: ``now`` (an aware datetime), the window in days and the table's zone in, a naive
wall-clock datetime out. Rows store wall-clock times in the table's zone (PHP's
``APP_TIMEZONE``; ``docs/php-compat.md`` §2), so the cut-off is one too, compared with ``<``.

"Older than 30 days" has two honest readings across a daylight-saving change: 30 × 24 hours,
and 30 calendar days on the wall clock (what PHP's backdating does). They differ by the DST
shift. A row is deleted only when it is older by both, so it is never younger than the window
by either. For the first, the fall-back hour repeats wall-clock times, so a wall-clock value
can name two instants: the cut-off is at most the lowest reading the clock showed at any
instant of the last ``days`` × 24 hours, so a repeated time is never taken for its older twin
(this matters for windows long enough to hold both a spring-forward and a fall-back).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from governance.errors import PolicyError

# Offsets change at most a few times a year; an hourly walk finds every change inside the window.
_STEP = timedelta(hours=1)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _lowest_wall_clock(start: datetime, end: datetime, zone: ZoneInfo) -> datetime:
    """The smallest wall-clock reading in ``zone`` at any instant of ``[start, end]`` (UTC)."""
    lowest = _wall(start, zone)
    here = start
    offset = here.astimezone(zone).utcoffset()
    while here < end:
        nxt = min(here + _STEP, end)
        next_offset = nxt.astimezone(zone).utcoffset()
        if next_offset is not None and offset is not None and next_offset < offset:
            # The clock went back between here and nxt: find the instant to the microsecond.
            lo, hi = here, nxt
            while hi - lo > timedelta(microseconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(zone).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            lowest = min(lowest, _wall(hi, zone))
        here, offset = nxt, next_offset
    return lowest


def retention_cutoff(now: datetime, days: int, zone: ZoneInfo | str) -> datetime:
    """The naive wall-clock time in ``zone`` below which a row is older than ``days`` by every
    reading (see the module docstring). ``now`` must be timezone-aware."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (datetime.now(timezone.utc)), not naive")
    if days < 1:
        raise PolicyError(f"retention days = {days} is invalid: a window of at least 1 day is required")
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    now_utc = now.astimezone(UTC)
    calendar = _wall(now_utc, zone) - timedelta(days=days)
    return min(calendar, _lowest_wall_clock(now_utc - timedelta(days=days), now_utc, zone))


def format_wall(value: datetime) -> str:
    """A naive wall-clock time as the table stores it: ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def wall_text(value: object) -> str | None:
    """A time column's value as wall-clock text (PyMySQL gives datetimes, SQLite text)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_wall(value)
    return str(value)
