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

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from governance.errors import ClaimConflict
from trace_service import db
from trace_service.sql_literals import NO_PARAMETERS, mysql_statements
from trace_service.sql_modes import backslash_escapes_off

TABLE = "trace_ingest_events"

_SELECT = sa.text(f"SELECT event_id FROM {TABLE} WHERE event_id IN :ids AND seen_at >= :old"
                  ).bindparams(sa.bindparam("ids", expanding=True))
_SELECT_ANY = sa.text(f"SELECT event_id FROM {TABLE} WHERE event_id IN :ids LIMIT 1"
                      ).bindparams(sa.bindparam("ids", expanding=True))
_RENEW = sa.text(f"UPDATE {TABLE} SET seen_at = :now WHERE event_id = :id")
# The batch claim's answer to an id that is there: a change, so the server counts the row
# twice (1 per insert, 2 per changed row: MySQL's affected rows), and an exclusive lock on the
# id alone (a duplicate primary key under ON DUPLICATE KEY UPDATE), where INSERT IGNORE would
# take a shared one on the id and the gap before it. The change is always rolled back
# (ClaimConflict): the count only says that some ids were there.
_MARK_STORED = " ON DUPLICATE KEY UPDATE seen_at = seen_at + INTERVAL 1 MICROSECOND"
_FORGET_BATCH = 10_000
# Deadlocks a one-by-one claim may lose before its batch is given up (counted as a db_error):
# it meets them only against batch claims of the same ids, each of which runs once.
DEADLOCK_ATTEMPTS = 3

T = TypeVar("T")  # rows per DELETE, so a backlog after an outage never holds long locks


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

    Several ids are first claimed as new ones, in one multi-row ``INSERT IGNORE``
    (:func:`_claim_batch`). On MySQL, when it skipped any (an id stored already, or claimed by
    another transaction meanwhile), it raises :class:`ClaimConflict`, and InnoDB may also pick
    such a batch claim as a deadlock victim: either way the caller rolls the transaction back
    and claims again with ``one_by_one`` in a new one (``TraceSink`` does).

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


def retrying_claims(transaction: Callable[[bool], T]) -> T:
    """``transaction(one_by_one)``, run again with ``one_by_one`` when it raised
    :class:`ClaimConflict` or lost a deadlock; its result. ``transaction`` must be a whole
    transaction that claims with :func:`claim` (``one_by_one`` passed on) and rolls back when
    that raises: then running it again stores nothing twice.

    The batch claim (the first run) may conflict or lose a deadlock to another batch claim of
    the same ids; one by one, ids are locked exclusively and in one order, yet a one-by-one claim
    can still lose a deadlock to a batch claim in flight: it runs again, up to
    :data:`DEADLOCK_ATTEMPTS` times, and the last deadlock is raised. Any other error is raised
    at once."""
    one_by_one = False
    lost = 0
    while True:
        try:
            return transaction(one_by_one)
        except ClaimConflict:
            pass
        except sa.exc.OperationalError as exc:
            if db.error_code(exc) != db.ER_LOCK_DEADLOCK:
                raise
            if one_by_one:
                lost += 1
                if lost == DEADLOCK_ATTEMPTS:
                    raise
        one_by_one = True


def _claim_batch(conn: Connection, ids: list[str], now: datetime) -> set[str] | None:
    """:func:`claim` of a batch of ids taken to be new (a queue consumer's batch is all ids,
    nearly always new): on MySQL one multi-row ``INSERT IGNORE``, and nothing else.

    When it inserted fewer rows than ids, some were there already (a redelivered entry, a
    client's retry) or another transaction claimed them meanwhile; which ones, the count does
    not say, and an ``INSERT IGNORE`` that meets a stored id holds a shared lock on it (and on
    the gap before it) that another claimer of that id may hold too. So it raises
    :class:`ClaimConflict`: the caller rolls back, which lets go of those locks, and decides the
    ids one by one in a new transaction. The same holds when InnoDB picks this transaction as
    the victim of a deadlock between two such batch claims (``TraceSink._insert_retrying``).

    No read of the ids first: it cost the database ~40% of what the claim costs and held one
    more round trip (bench/consume.py), to shield only the rare batch that repeats ids from
    that race, which the one-by-one claim settles anyway. Both statements are literal text
    (:mod:`trace_service.sql_literals`, escaped as the session reads it): binding 500 ids cost
    more than the insert itself.

    SQLite (one writer holds the whole database, so nobody claims an id between a read and an
    insert): the ids are read first; None (decide id by id, in the same transaction) when any
    is there.
    """
    if conn.dialect.name == "sqlite":
        if conn.execute(_SELECT_ANY, {"ids": ids}).first() is not None:
            return None
        conn.execute(sa.text(f"INSERT OR IGNORE INTO {TABLE} (event_id, seen_at) VALUES (:id, :now)"),
                     [{"id": event_id, "now": now} for event_id in ids])
        return set(ids)
    plain = not backslash_escapes_off(conn.connection.dbapi_connection)
    stamp = now.isoformat(" ", "microseconds")
    statements = mysql_statements(f"INSERT INTO {TABLE} (event_id, seen_at) VALUES ",
                                  [(event_id, stamp) for event_id in ids], backslash_escapes=plain)
    affected = sum(conn.exec_driver_sql(statement + _MARK_STORED,
                                        execution_options=NO_PARAMETERS).rowcount
                   for statement in statements)
    if affected != len(ids):
        raise ClaimConflict(f"{affected - len(ids)} of {len(ids)} event ids were stored already "
                            f"or claimed meanwhile")
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
