"""Idempotency of posted traces: an ``event_id`` is stored once within the window.

The rule, shared by every write path: **an id is remembered in the same transaction that stores
its trace.** The sink claims the ids of a batch (:func:`claim`) inside the transaction that
inserts the batch's rows, and skips the rows whose id was already claimed; if the transaction
rolls back (database refused the rows, connection lost, process killed), the ids go with it and
a client's retry is stored. Two gunicorn workers or hosts writing the same id at once meet on the
primary key of ``trace_ingest_events``: the second waits for the first transaction and then sees
the id (stored once), or, if the first rolled back, claims it itself.

The HTTP endpoint only *reads* (:func:`already_stored`): it answers ``duplicate`` when the first
copy is committed. A retry that arrives while the first copy is still queued is answered
``accepted`` and deduplicated by the sink (counted as ``duplicates``, neither written nor lost).

Ids older than the window are forgotten: a claim of an expired id succeeds (its ``seen_at`` is
renewed), and :func:`forget_expired` deletes them now and then, in a transaction of its own so
its range locks never meet a write's.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

TABLE = "trace_ingest_events"

_SELECT = sa.text(f"SELECT 1 FROM {TABLE} WHERE event_id = :id AND seen_at >= :old")
_RENEW = sa.text(f"UPDATE {TABLE} SET seen_at = :now WHERE event_id = :id AND seen_at < :old")
_FORGET = sa.text(f"DELETE FROM {TABLE} WHERE seen_at < :old")


def utc_now() -> datetime:
    """Naive UTC now, as ``seen_at`` is stored (the one clock read of this module)."""
    return datetime.now(UTC).replace(tzinfo=None)


def already_stored(engine: Engine, event_id: UUID | str, window_seconds: float,
                   now: datetime | None = None) -> bool:
    """True when a trace with ``event_id`` was committed within the window (read only)."""
    old = (now or utc_now()) - timedelta(seconds=window_seconds)
    with engine.connect() as conn:
        return conn.execute(_SELECT, {"id": str(event_id), "old": old}).first() is not None


def claim(conn: Connection, event_ids: Iterable[str], window_seconds: float,
          now: datetime) -> set[str]:
    """Remember ``event_ids`` in ``conn``'s transaction; returns those that were new (or
    expired) and whose traces must be stored. The others are duplicates.

    Ids are claimed in sorted order, so two transactions claiming overlapping ids lock them
    in the same order and cannot deadlock on them.
    """
    insert = sa.text(f"INSERT {_ignore(conn)} INTO {TABLE} (event_id, seen_at) VALUES (:id, :now)")
    old = now - timedelta(seconds=window_seconds)
    claimed: set[str] = set()
    for event_id in sorted(set(event_ids)):
        params = {"id": event_id, "now": now, "old": old}
        if conn.execute(insert, params).rowcount or conn.execute(_RENEW, params).rowcount:
            claimed.add(event_id)
    return claimed


def forget_expired(engine: Engine, window_seconds: float, now: datetime) -> int:
    """Delete the ids older than the window; returns how many."""
    with engine.begin() as conn:
        return int(conn.execute(_FORGET, {"old": now - timedelta(seconds=window_seconds)}).rowcount)


def _ignore(conn: Connection) -> str:
    return "OR IGNORE" if conn.dialect.name == "sqlite" else "IGNORE"
