"""actor_admin_id as the OpenAPI document states it: found by schemathesis (issue 14)."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import ValidationError

from trace_service.http.ingest_schema import MAX_ACTOR_ID, load_trace


@pytest.mark.parametrize("value", [7, "7", 7.0, 0, MAX_ACTOR_ID, str(MAX_ACTOR_ID)])
def test_whole_numbers_and_their_digits_are_taken(value: Any) -> None:
    assert load_trace({"event_key": "a", "actor_admin_id": value})["actor_admin_id"] == int(value)


@pytest.mark.parametrize("value", [2.5, 2.589e-42, " 7", "+7", "\u0667", "-1", MAX_ACTOR_ID + 1, ""])
def test_other_values_are_refused_not_altered(value: Any) -> None:
    # 2.5 was stored as 2; over INT was accepted and then lost at the insert on MariaDB.
    with pytest.raises(ValidationError, match="actor_admin_id"):
        load_trace({"event_key": "a", "actor_admin_id": value})
