"""Column values as PHP writes and reads them: severity, timestamps, string lengths.

All pure: the layout, the zone and the instant are arguments (``docs/php-compat.md`` §2).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from trace_service.layout import Layout

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

# Every name PHP code or Monolog emits, to one canonical PSR-3 level.
_CANONICAL = {
    "debug": "debug", "trace": "debug", "100": "debug",
    "info": "info", "information": "info", "informational": "info", "200": "info",
    "notice": "notice", "250": "notice",
    "warn": "warning", "warning": "warning", "300": "warning",
    "err": "error", "error": "error", "400": "error",
    "crit": "critical", "critical": "critical", "fatal": "critical", "500": "critical",
    "alert": "alert", "550": "alert",
    "emerg": "emergency", "emergency": "emergency", "600": "emergency",
}

# When a layout does not allow a level, the nearest allowed one, tried in order.
_FALLBACKS = {
    "debug": ("debug", "info"),
    "info": ("info",),
    "notice": ("notice", "info"),
    "warning": ("warning",),
    "error": ("error",),
    "critical": ("critical", "error"),
    "alert": ("alert", "critical", "error"),
    "emergency": ("emergency", "critical", "error"),
}

DEFAULT_SEVERITY = "info"


@lru_cache(maxsize=16)
def severity_table(allowed: frozenset[str]) -> dict[str, str]:
    """Every known severity name to the value a layout allowing ``allowed`` stores."""
    table = {}
    for name, canonical in _CANONICAL.items():
        table[name] = next((s for s in _FALLBACKS[canonical] if s in allowed), DEFAULT_SEVERITY)
    return table


def normalise_severity(value: object, layout: Layout) -> tuple[str, bool]:
    """Return ``(severity the layout accepts, whether the input was a known name)``.

    Case and surrounding space are folded; Monolog's numeric levels are understood; unknown
    values become ``info`` and the caller counts them.
    """
    table = severity_table(layout.severities)
    if type(value) is str:
        hit = table.get(value)
        if hit is not None:
            return hit, True
        hit = table.get(value.strip().lower())
    elif isinstance(value, int) and not isinstance(value, bool):
        hit = table.get(str(value))
    else:
        hit = None
    return (hit, True) if hit is not None else (DEFAULT_SEVERITY, False)


def canonical_severity(value: object) -> str:
    """The PSR-3 name of a severity as a caller or PHP gave it (``"WARN"``, ``300``, ...);
    ``info`` when unknown, as it would be stored."""
    if type(value) is str:
        hit = _CANONICAL.get(value) or _CANONICAL.get(value.strip().lower())
    elif isinstance(value, int) and not isinstance(value, bool):
        hit = _CANONICAL.get(str(value))
    else:
        hit = None
    return hit or DEFAULT_SEVERITY


class TimestampFormatter:
    """Epoch nanoseconds to ``YYYY-MM-DD HH:MM:SS.ffffff`` wall-clock text in one zone.

    The seconds part is cached for the last second seen: rows arrive in time order, so most rows
    reuse it and only the microseconds are formatted.
    """

    def __init__(self, zone: str) -> None:
        self.zone = ZoneInfo(zone)
        self._last_second = -1
        self._last_text = ""

    def format_ns(self, epoch_ns: int) -> str:
        """Format an instant given as nanoseconds since the epoch."""
        second, nanos = divmod(epoch_ns, 1_000_000_000)
        if second != self._last_second:
            wall = datetime.fromtimestamp(second, self.zone)
            self._last_text = wall.strftime("%Y-%m-%d %H:%M:%S")
            self._last_second = second
        return f"{self._last_text}.{nanos // 1000:06d}"

    def format_datetime(self, moment: datetime) -> str:
        """Format a datetime: aware ones are converted to the zone, naive ones are taken as is."""
        if moment.tzinfo is not None:
            moment = moment.astimezone(self.zone)
        return moment.strftime(TIMESTAMP_FORMAT)


def truncate(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters (VARCHAR lengths count characters)."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit]


__all__ = [
    "DEFAULT_SEVERITY", "TIMESTAMP_FORMAT", "TimestampFormatter", "normalise_severity",
    "severity_table", "truncate",
]
