"""Idempotency of posted traces: an ``event_id`` seen within the window is accepted once.

The ids live in the database (``trace_ingest_events``), so a client's retry is recognised
whichever gunicorn worker or host receives it. :func:`first_sighting` records an id and says
whether it is new, in one statement (``INSERT IGNORE`` / ``INSERT OR IGNORE``); ids older than
the window are pruned now and then, so the table stays small.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_PRUNE_EVERY = 500  # on average, one prune per this many new ids


def first_sighting(engine: Engine, event_id: UUID, window_seconds: float) -> bool:
    """Record ``event_id``; True if it was not seen within the window (store the trace)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    ignore = "OR IGNORE" if engine.dialect.name == "sqlite" else "IGNORE"
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM trace_ingest_events WHERE event_id = :id AND seen_at < :old"),
                     {"id": str(event_id), "old": now - timedelta(seconds=window_seconds)})
        inserted = conn.execute(
            sa.text(f"INSERT {ignore} INTO trace_ingest_events (event_id, seen_at) VALUES (:id, :now)"),
            {"id": str(event_id), "now": now},
        ).rowcount
        if inserted and random.random() < 1 / _PRUNE_EVERY:
            conn.execute(sa.text("DELETE FROM trace_ingest_events WHERE seen_at < :old"),
                         {"old": now - timedelta(seconds=window_seconds)})
    return bool(inserted)
