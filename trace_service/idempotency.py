"""Idempotency of posted traces: an ``event_id`` is stored once within the window.

The rule, shared by every write path: **an id is remembered in the same transaction that stores
its trace.** The sink claims the ids of a batch (:func:`claim`) inside the transaction that
inserts the batch's rows, and skips the rows whose id was already claimed; if the transaction
rolls back (database refused the rows, connection lost, process killed), the ids go with it and
a client's retry is stored. Two gunicorn workers or hosts writing the same id at once meet on the
primary key of ``trace_ingest_events``: the second waits for the first transaction and then sees
the id (stored once), or, if the first rolled back, claims it itself.

The HTTP endpoint only *reads* (:func:`stored_ids`): it answers ``duplicate`` when the first
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

from governance.errors import ClaimConflict
from trace_service.sql_literals import mysql_statements, row_literal, row_literal_no_backslash
from trace_service.sql_modes import backslash_escapes_off

TABLE = "trace_ingest_events"

_SELECT = sa.text(f"SELECT event_id FROM {TABLE} WHERE event_id IN :ids AND seen_at >= :old"
                  ).bindparams(sa.bindparam("ids", expanding=True))
_SELECT_ANY = sa.text(f"SELECT event_id FROM {TABLE} WHERE event_id IN :ids LIMIT 1"
                      ).bindparams(sa.bindparam("ids", expanding=True))
_RENEW = sa.text(f"UPDATE {TABLE} SET seen_at = :now WHERE event_id = :id")
_FORGET_BATCH = 10_000  # rows per DELETE, so a backlog after an outage never holds long locks


def utc_now() -> datetime:
    """Naive UTC now, as ``seen_at`` is stored (the one clock read of this module)."""
    return datetime.now(UTC).replace(tzinfo=None)


def stored_ids(engine: Engine, event_ids: Iterable[UUID | str], window_seconds: float,
               now: datetime | None = None) -> set[str]:
    """Those of ``event_ids`` whose trace was committed within the window (read only)."""
    ids = sorted({str(event_id) for event_id in event_ids})
    if not ids:
        return set()
    old = (now or utc_now()) - timedelta(seconds=window_seconds)
    with engine.connect() as conn:
        return set(conn.execute(_SELECT, {"ids": ids, "old": old}).scalars())


def claim(conn: Connection, event_ids: Iterable[str], window_seconds: float,
          now: datetime, *, one_by_one: bool = False) -> set[str]:
    """Remember ``event_ids`` in ``conn``'s transaction; returns those that were new (or
    expired) and whose traces must be stored. The others are duplicates.

    Several new ids are first claimed in one multi-row ``INSERT IGNORE`` (:func:`_claim_batch`).
    On MySQL, when another claimer took one of them between its read and its insert, it raises
    :class:`ClaimConflict`: the caller rolls the transaction back and claims again with
    ``one_by_one`` in a new one (``TraceSink`` does).

    One by one, each id is first read with ``FOR UPDATE`` (an exclusive lock from the start:
    two claimers of a stored id queue behind each other instead of both holding a shared lock
    and then both asking for an exclusive one, which InnoDB resolves as a deadlock), then
    inserted with ``IGNORE`` if absent or renewed if expired. On MySQL the caller runs this in
    READ COMMITTED (``TraceSink``), where a locking read of an absent key takes no gap lock: two
    claimers of a new id meet on the primary key, the second waits and then sees a duplicate.
    Ids are claimed in sorted order, so transactions with several ids lock them in one order.
    """
    ids = sorted(set(event_ids))
    old = now - timedelta(seconds=window_seconds)
    if len(ids) > 1 and not one_by_one:
        claimed = _claim_batch(conn, ids, now)
        if claimed is not None:
            return claimed
    return _claim_one_by_one(conn, ids, now, old)


def _claim_batch(conn: Connection, ids: list[str], now: datetime) -> set[str] | None:
    """:func:`claim` of a batch of new ids in two statements (a queue consumer's batch is all
    ids, nearly always new): one read of the ids, then one multi-row ``INSERT IGNORE``.

    None (decide id by id, in the same transaction) when any id is already there, since
    renewing or skipping stored ids is where claimers meet and the one-by-one order keeps them
    from deadlocking (an ``INSERT IGNORE`` that meets a stored id takes a shared lock on it,
    and on the gap before it, which two claimers then both hold: the read first costs the
    database ~10-15% of a batch, and is what keeps that race from ever happening. Without it,
    one consumer drained ~15% faster, and four claimers of the same stored ids deadlocked even
    one by one: tests/trace_service/test_idempotency.py).

    On MySQL, when the insert skipped an id all the same (another claimer took it between the
    read and the insert), it raises :class:`ClaimConflict`: the caller rolls the transaction
    back, which lets go of the shared locks the insert took, and claims again with
    ``one_by_one`` in a new transaction (``TraceSink`` does). Both statements are literal text
    (:mod:`trace_service.sql_literals`, escaped as the session reads it): binding 500 ids cost
    more than the insert itself (bench/consume.py).
    """
    if conn.dialect.name == "sqlite":
        if conn.execute(_SELECT_ANY, {"ids": ids}).first() is not None:
            return None
        # One writer at a time holds the whole database, so nobody can claim an id between our
        # read and our insert.
        conn.execute(sa.text(f"INSERT OR IGNORE INTO {TABLE} (event_id, seen_at) VALUES (:id, :now)"),
                     [{"id": event_id, "now": now} for event_id in ids])
        return set(ids)
    literal = conn.execution_options(no_parameters=True)  # the driver must not %-format data
    plain = not backslash_escapes_off(conn.connection.dbapi_connection)
    quoted = row_literal(tuple(ids)) if plain else row_literal_no_backslash(tuple(ids))
    if literal.exec_driver_sql(f"SELECT event_id FROM {TABLE} WHERE event_id IN {quoted} LIMIT 1"
                               ).first() is not None:
        return None
    stamp = now.isoformat(" ", "microseconds")
    statements = mysql_statements(f"INSERT IGNORE INTO {TABLE} (event_id, seen_at) VALUES ",
                                  [(event_id, stamp) for event_id in ids], backslash_escapes=plain)
    inserted = sum(literal.exec_driver_sql(statement).rowcount for statement in statements)
    if inserted != len(ids):
        raise ClaimConflict(f"{len(ids) - inserted} of {len(ids)} event ids were claimed meanwhile")
    return set(ids)


def _claim_one_by_one(conn: Connection, ids: list[str], now: datetime, old: datetime) -> set[str]:
    lock = "" if conn.dialect.name == "sqlite" else " FOR UPDATE"
    select = sa.text(f"SELECT CASE WHEN seen_at < :old THEN 1 ELSE 0 END FROM {TABLE} "
                     f"WHERE event_id = :id{lock}")
    insert = sa.text(f"INSERT {_ignore(conn)} INTO {TABLE} (event_id, seen_at) VALUES (:id, :now)")
    claimed: set[str] = set()
    for event_id in ids:
        params = {"id": event_id, "now": now, "old": old}
        expired = conn.execute(select, params).scalar()
        if expired is None:
            # rowcount of INSERT IGNORE is 1 or 0 (a claimer that committed meanwhile).
            if conn.execute(insert, params).rowcount:
                claimed.add(event_id)
        elif expired:
            conn.execute(_RENEW, params)
            claimed.add(event_id)
    return claimed


def forget_expired(engine: Engine, window_seconds: float, now: datetime) -> int:
    """Delete the ids older than the window, in bounded statements; returns how many."""
    limit = "" if engine.dialect.name == "sqlite" else f" LIMIT {_FORGET_BATCH}"
    forget = sa.text(f"DELETE FROM {TABLE} WHERE seen_at < :old{limit}")
    old = now - timedelta(seconds=window_seconds)
    total = 0
    while True:
        with engine.begin() as conn:
            deleted = int(conn.execute(forget, {"old": old}).rowcount)
        total += deleted
        if not limit or deleted < _FORGET_BATCH:
            return total


def _ignore(conn: Connection) -> str:
    return "OR IGNORE" if conn.dialect.name == "sqlite" else "IGNORE"
