"""The physical layouts of ``telemetry_traces`` and the one mapping every reader and writer uses.

Two layouts exist in the wild (``docs/php-compat.md`` §1):

* ``A``: the governance layout our migration creates (``created_at``, ``actor_admin_id``);
* ``B``: the PHP admin panel's schema (``occurred_at``, ``actor_type`` + ``actor_id``,
  ``correlation_id``, ENUM severity);
* ``B0``: an older variant of B (``occurred_at``, ``actor_admin_id``, VARCHAR severity).

:func:`detect_layout` is pure: column names (and optionally their lengths) in, a :class:`Layout`
out, or :class:`LayoutError` naming what is missing. The live-table edge is in ``trace_service.db``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from trace_service.errors import LayoutError

TABLE_NAME = "telemetry_traces"

# Columns every layout has.
COMMON_COLUMNS = frozenset(
    {"id", "event_key", "severity", "ip_address", "user_agent", "route_name", "request_id",
     "metadata"}
)

# Lengths in characters; TEXT is 65,535 bytes, so 16,383 four-byte characters always fit.
_TEXT_CHARS = 16_383


@dataclass(frozen=True)
class Layout:
    """One physical layout: which column holds what, and what values each column accepts."""

    name: str
    time_column: str
    # "admin_id": one actor_admin_id column; "type_id": actor_type + actor_id.
    actor_style: str
    severities: frozenset[str]
    max_chars: Mapping[str, int]
    has_correlation_id: bool = False
    required: frozenset[str] = field(default=frozenset())

    @property
    def insert_columns(self) -> tuple[str, ...]:
        """Columns the writer fills, in a fixed order (``id`` is left to AUTO_INCREMENT)."""
        actor = ("actor_admin_id",) if self.actor_style == "admin_id" else ("actor_type", "actor_id")
        return (
            "event_key", "severity", *actor, "ip_address", "user_agent", "route_name",
            "request_id", "metadata", self.time_column,
        )

    def with_lengths(self, lengths: Mapping[str, int | None]) -> Layout:
        """This layout with column lengths taken from a live table where it reports them."""
        merged = dict(self.max_chars)
        for column, length in lengths.items():
            if column in merged and length:
                merged[column] = length
        return Layout(
            name=self.name, time_column=self.time_column, actor_style=self.actor_style,
            severities=self.severities, max_chars=merged,
            has_correlation_id=self.has_correlation_id, required=self.required,
        )


LAYOUT_A = Layout(
    name="A",
    time_column="created_at",
    actor_style="admin_id",
    severities=frozenset({"debug", "info", "warning", "error"}),
    max_chars={"event_key": 255, "severity": 20, "ip_address": 45, "user_agent": 255,
               "route_name": 255, "request_id": 64},
    required=COMMON_COLUMNS | {"created_at", "actor_admin_id"},
)

LAYOUT_B = Layout(
    name="B",
    time_column="occurred_at",
    actor_style="type_id",
    severities=frozenset({"info", "warning", "error", "critical"}),
    max_chars={"event_key": 255, "actor_type": 32, "ip_address": 45, "user_agent": _TEXT_CHARS,
               "route_name": 255, "request_id": 64},
    has_correlation_id=True,
    required=COMMON_COLUMNS | {"occurred_at", "actor_type", "actor_id"},
)

LAYOUT_B0 = Layout(
    name="B0",
    time_column="occurred_at",
    actor_style="admin_id",
    severities=frozenset({"debug", "info", "warning", "error", "critical"}),
    max_chars={"event_key": 255, "severity": 16, "ip_address": 45, "user_agent": _TEXT_CHARS,
               "route_name": 255, "request_id": 64},
    required=COMMON_COLUMNS | {"occurred_at", "actor_admin_id"},
)

LAYOUTS = (LAYOUT_A, LAYOUT_B, LAYOUT_B0)


def detect_layout(columns: Iterable[str], lengths: Mapping[str, int | None] | None = None) -> Layout:
    """Return the layout whose required columns are all present, or raise :class:`LayoutError`.

    Column names are compared case-insensitively (MySQL's are). When several layouts match, the
    first of A, B, B0 wins. The error names the missing columns of the closest layout.
    """
    present = {c.lower() for c in columns}
    if not present:
        raise LayoutError(
            f"table {TABLE_NAME} does not exist: run `flask db upgrade` (or `alembic upgrade head`)"
        )
    for layout in LAYOUTS:
        if layout.required <= present:
            return layout.with_lengths({k.lower(): v for k, v in (lengths or {}).items()})
    closest = min(LAYOUTS, key=lambda lay: len(lay.required - present))
    missing = ", ".join(sorted(closest.required - present))
    raise LayoutError(
        f"table {TABLE_NAME} matches no known layout; closest is layout {closest.name}, "
        f"missing columns: {missing}. See docs/php-compat.md §1 for the layouts this service reads."
    )
