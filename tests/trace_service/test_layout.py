"""Layout detection from column names (docs/php-compat.md §1)."""

from __future__ import annotations

import pytest

from trace_service.errors import LayoutError
from trace_service.layout import LAYOUT_A, LAYOUT_B, LAYOUT_B0, detect_layout

COMMON = ["id", "event_key", "severity", "ip_address", "user_agent", "route_name", "request_id",
          "metadata"]


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (COMMON + ["actor_admin_id", "created_at"], LAYOUT_A),
        (COMMON + ["actor_type", "actor_id", "correlation_id", "occurred_at"], LAYOUT_B),
        (COMMON + ["actor_admin_id", "occurred_at"], LAYOUT_B0),
        ([c.upper() for c in COMMON] + ["ACTOR_ADMIN_ID", "Created_At"], LAYOUT_A),
    ],
)
def test_layouts_are_recognised_by_their_columns(columns: list[str], expected: object) -> None:
    assert detect_layout(columns).name == expected.name  # type: ignore[attr-defined]


def test_missing_table_says_how_to_create_it() -> None:
    with pytest.raises(LayoutError, match="does not exist: run `flask db upgrade`"):
        detect_layout([])


def test_unknown_layout_names_the_missing_columns_of_the_closest_layout() -> None:
    with pytest.raises(LayoutError, match=r"closest is layout A, missing columns: created_at\. See"):
        detect_layout(COMMON + ["actor_admin_id"])


def test_live_lengths_override_defaults() -> None:
    layout = detect_layout(COMMON + ["actor_admin_id", "created_at"], {"user_agent": 512})
    assert layout.max_chars["user_agent"] == 512
    assert layout.max_chars["route_name"] == 255


def test_insert_columns_follow_the_layout() -> None:
    assert LAYOUT_A.insert_columns[-1] == "created_at"
    assert LAYOUT_B.insert_columns[2:4] == ("actor_type", "actor_id")
    assert LAYOUT_B0.insert_columns[2] == "actor_admin_id"
