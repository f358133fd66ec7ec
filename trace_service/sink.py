"""Turning queued trace items into rows of the live layout and inserting them.

:func:`build_row` is pure (item, layout, formatter in; a tuple in the layout's column order out).
:class:`TraceSink` is the I/O edge: one multi-row INSERT per batch through the engine it is given
(``exec_driver_sql``, so PyMySQL folds the batch into one statement and engine events still see
it), in its own transaction, outside any caller's transaction.

Items posted with an ``event_id`` are deduplicated in the same transaction that stores them
(``trace_service.idempotency``): an id is remembered only together with its row, so a batch
that is lost leaves its ids unclaimed and a retry is stored.

A batch that fails because of its data (a value the server refuses) is retried row by row so one
bad row costs one row; a batch that fails because the database is unreachable, or the table is
missing, is counted as ``db_error`` and flagged ``unavailable`` for the writer's circuit breaker.
``write()`` never raises; every item it is given is counted exactly once in its result.
"""

from __future__ import annotations

import contextlib
import random
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from governance.errors import AuditWriteForbidden, ClaimConflict, MaskingError
from governance.masking import Masker
from trace_service import db, idempotency
from trace_service.errors import LayoutError, SinkUnavailable, TraceInputError
from trace_service.layout import TABLE_NAME, Layout
from trace_service.opt_outs import OptOutCache
from trace_service.php_json import EncodedMetadata, encode_metadata, thaw
from trace_service.queue import DiscardReason, DropReason, TraceItem, WriteResult
from trace_service.sql_literals import NO_PARAMETERS, join_statements, mysql_statements, row_literal
from trace_service.sql_modes import backslash_escapes_off
from trace_service.values import TimestampFormatter, normalise_severity, truncate

# Before the transaction's first statement (MySQL refuses it inside a transaction).
_READ_COMMITTED = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
_LEVEL = "READ COMMITTED"  # the same, as SQLAlchemy's isolation_level option names it
_FORGET_EVERY = 500  # on average, expired event ids are deleted once per this many claims
# A generator of our own: the writer thread must not advance the global `random` state that
# the host application (or a test's hypothesis run) relies on.
_dice = random.Random()


def build_row(
    item: TraceItem, layout: Layout, formatter: TimestampFormatter, masker: Masker | None = None
) -> tuple[tuple[Any, ...], bool]:
    """The item as a tuple of ``layout.insert_columns`` values, masked, PHP-formatted and
    length-capped, and whether its severity was a known name.

    Raises :class:`MaskingError` when masking fails: the caller drops the row, never stores it
    unmasked.
    """
    severity, known = normalise_severity(item.severity, layout)
    limits = layout.max_chars
    when = item.when
    stamp = formatter.format_datetime(when) if isinstance(when, datetime) else formatter.format_ns(when)
    if layout.actor_style == "admin_id":
        actor: tuple[Any, ...] = (item.actor_admin_id,)
    else:
        actor = ("admin" if item.actor_admin_id is not None else "system", item.actor_admin_id)
    snap = item.metadata
    if isinstance(snap, EncodedMetadata):
        encoded = snap.text  # masked and encoded before it was queued (the durable path)
    else:
        metadata = thaw(snap)
        plain = False
        if masker is not None and metadata is not None:
            try:
                metadata, plain = masker.mask_plain(metadata)  # thaw() made it ours
            except Exception as exc:  # fail closed, whatever went wrong
                raise MaskingError(f"masking failed: {type(exc).__name__}") from exc
        encoded = encode_metadata(metadata, plain=plain)
    row = (
        item.event_key,
        severity,
        *actor,
        truncate(item.ip_address, limits["ip_address"]),
        truncate(item.user_agent, limits["user_agent"]),
        truncate(item.route_name, limits["route_name"]),
        truncate(item.request_id, limits["request_id"]),
        encoded,
        stamp,
    )
    return row, known


def insert_prefix(layout: Layout, table: str = TABLE_NAME) -> str:
    """``INSERT INTO telemetry_traces (<the layout's columns>) VALUES `` (rows follow)."""
    return f"INSERT INTO {table} ({', '.join(layout.insert_columns)}) VALUES "


def insert_sql(layout: Layout, paramstyle: str, table: str = TABLE_NAME) -> str:
    """The INSERT statement for one row of ``layout`` in the driver's parameter style."""
    marker = "?" if paramstyle == "qmark" else "%s"
    return insert_prefix(layout, table) + "(" + ", ".join(marker for _ in layout.insert_columns) + ")"


def describe(exc: BaseException) -> str:
    """A short description of a database error without statement or parameters (no row values)."""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{type(orig).__name__} {args[0]}: {str(args[1])[:200]}"
    return f"{type(orig).__name__}: {str(orig)[:200]}"


# Errors caused by a row's values: isolate the row. Anything else is the database's state.
_ROW_ERRORS = (sa_exc.DataError, sa_exc.IntegrityError)
# Raised by the driver before anything is sent, e.g. a string holding a lone surrogate, which
# has no UTF-8 form, or (sqlite3) an integer beyond 64 bits: the row is invalid, not the database.
_ENCODING_ERRORS = (UnicodeError, OverflowError)


@dataclass
class PreparedBatch:
    """A batch built into rows by :meth:`TraceSink.prepare`, not yet sent: the rows, their event
    ids (None: not deduplicated) and the result so far (items that did not become rows)."""

    rows: list[tuple[Any, ...]]
    ids: list[str | None]
    result: WriteResult
    # The rows as SQL literals for a session where backslashes escape (ours always), built in
    # the worker thread so that the store stage only sends; None: built when stored.
    literals: list[str] | None = None


class TraceSink:
    """Writes trace items to the live ``telemetry_traces`` through ``engine``."""

    def __init__(self, engine: Engine, timezone: str, masker: Masker | None = None,
                 idempotency_window: float = 0.0, *, table: str = TABLE_NAME,
                 opt_outs: OptOutCache | None = None, keep_connection: float = 0.0) -> None:
        """``table`` is the table the rows go to: always ``telemetry_traces`` in the service;
        the guard's tests name ``audit_logs`` here, as a misconfiguration would. Rows of people
        in ``opt_outs`` (checked on the masked metadata) are discarded, counted ``opted_out``.
        ``keep_connection``: seconds a batch's connection is kept for the next batch (see
        :meth:`_connection`; 0, the default: a connection from the pool for each batch). Whoever
        keeps one gives it back with :meth:`release_connection`."""
        self.engine = engine
        self.opt_outs = opt_outs
        self.table = table
        self.formatter = TimestampFormatter(timezone)
        self.masker = masker
        # Seconds an event_id is remembered; 0 stores every item, event_id or not.
        self.idempotency_window = idempotency_window
        self._layout: Layout | None = None
        self._sql = ""
        self._prefix = ""
        # PyMySQL: literal multi-row statements; SQLite: the driver's executemany.
        self._literal_batches = engine.dialect.driver == "pymysql"
        self.keep_connection = keep_connection
        self._kept: Connection | None = None
        self._kept_until = 0.0  # time.monotonic() after which the kept connection is given back

    def layout(self) -> Layout:
        """The live table's layout (detected on first use; raises :class:`SinkUnavailable`)."""
        if self._layout is None:
            try:
                layout = db.table_layout(self.engine)
            except LayoutError as exc:
                raise SinkUnavailable(str(exc)) from exc
            except sa_exc.SQLAlchemyError as exc:
                raise SinkUnavailable(describe(exc)) from exc
            self._sql = insert_sql(layout, self.engine.dialect.paramstyle, self.table)
            self._prefix = insert_prefix(layout, self.table)
            self._layout = layout
        return self._layout

    def probe(self) -> None:
        """Check the database answers and the table is there; raises :class:`SinkUnavailable`."""
        self._layout = None
        db.forget_layout(self.engine)
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except sa_exc.SQLAlchemyError as exc:
            raise SinkUnavailable(describe(exc)) from exc
        self.layout()

    def write(self, items: list[TraceItem]) -> WriteResult:
        """Insert ``items`` in one transaction. Never raises: every item ends up counted as
        written or dropped in the result, and ``unavailable`` tells the breaker about outages.
        The writer's worker calls :meth:`prepare` and :meth:`store` itself for full batches
        (``trace_service.worker.StoreStage``): a subclass changes those, not this."""
        return self.store(self.prepare(items))

    def prepare(self, items: list[TraceItem]) -> PreparedBatch:
        """The first half of :meth:`write`, with no statement sent: each item masked, encoded
        and built into a row of the live layout, or counted (dropped, opted out) in the
        batch's result. The worker prepares the next batch while :meth:`store` writes this one
        (``trace_service.worker``). Never raises."""
        result = WriteResult()
        try:
            layout = self.layout()
        except SinkUnavailable as exc:
            result.unavailable = True
            result.drop(DropReason.DB_ERROR, len(items), str(exc))
            return PreparedBatch([], [], result)
        rows: list[tuple[Any, ...]] = []
        ids: list[str | None] = []
        dedup = self.idempotency_window > 0
        opted_out = self.opt_outs.current if self.opt_outs is not None else None
        for item in items:
            try:
                row, known = build_row(item, layout, self.formatter, self.masker)
            except MaskingError as exc:
                result.drop(DropReason.MASKING_ERROR, 1, str(exc))  # never the value: it was not masked
                continue
            except (TraceInputError, ValueError, TypeError, OverflowError) as exc:
                result.drop(DropReason.INVALID, 1, f"{type(exc).__name__}: {exc}")
                continue
            if opted_out and opted_out.excludes(item.actor_admin_id, row[-2]):  # -2: metadata
                result.discarded[DiscardReason.OPTED_OUT] += 1
                continue
            rows.append(row)
            ids.append(item.event_id if dedup else None)
            result.unknown_severity += not known
        # Built here, not when stored, so that a store stage only sends (rows whose ids turn
        # out to be stored already are left out with their literals then: _claimed_rows).
        literals = [row_literal(row) for row in rows] if self._literal_batches else None
        return PreparedBatch(rows, ids, result, literals)

    def store(self, batch: PreparedBatch) -> WriteResult:
        """The second half of :meth:`write`: the prepared rows in one transaction (row by row
        when one of them is refused); the batch's result with every row counted. Never raises."""
        if batch.rows:
            self._insert_isolating(batch.rows, batch.ids, batch.result, batch.literals)
        return batch.result

    def _insert_isolating(self, rows: list[tuple[Any, ...]], ids: list[str | None],
                          result: WriteResult, literals: list[str] | None = None) -> None:
        """One multi-row INSERT; on a data error, row by row so only the bad rows are lost."""
        try:
            self._count_stored(len(rows), self._insert_retrying(rows, ids, literals), result)
            return
        except AuditWriteForbidden as exc:
            result.drop(DropReason.GUARD_BLOCKED, len(rows), str(exc))
            return
        except _ROW_ERRORS as exc:
            result.last_error = describe(exc)
        except sa_exc.SQLAlchemyError as exc:
            self._unavailable(exc, len(rows), result)
            return
        except _ENCODING_ERRORS as exc:
            result.last_error = f"{type(exc).__name__}"
        for index, (row, event_id) in enumerate(zip(rows, ids, strict=True)):
            try:
                self._count_stored(1, self._insert_retrying([row], [event_id]), result)
            except _ROW_ERRORS as exc:
                result.drop(DropReason.DB_ERROR, 1, describe(exc))
            except _ENCODING_ERRORS as exc:
                # The type only: the message of a UnicodeEncodeError quotes the value.
                result.drop(DropReason.INVALID, 1, f"{type(exc).__name__}: the row cannot be encoded")
            except sa_exc.SQLAlchemyError as exc:
                self._unavailable(exc, len(rows) - index, result)
                return

    @staticmethod
    def _count_stored(count: int, duplicates: int, result: WriteResult) -> None:
        result.written += count - duplicates
        result.duplicates += duplicates

    def _unavailable(self, exc: sa_exc.SQLAlchemyError, count: int, result: WriteResult) -> None:
        code = db.error_code(exc)
        if code == db.ER_LOCK_DEADLOCK:
            # Lost every retry to lock contention: the database is busy, not down.
            result.drop(DropReason.DB_ERROR, count, describe(exc))
            return
        if isinstance(exc, sa_exc.ProgrammingError | sa_exc.OperationalError):
            # The table may have been dropped or altered: look again at the next probe.
            self._layout = None
            db.forget_layout(self.engine)
        result.unavailable = True
        lost_after_send = code == db.CR_SERVER_LOST
        result.drop(DropReason.UNCONFIRMED if lost_after_send else DropReason.DB_ERROR, count, describe(exc))

    def _insert_retrying(self, rows: list[tuple[Any, ...]], ids: list[str | None],
                         literals: list[str] | None = None) -> int:
        """:meth:`_insert`, run again (the ids claimed one by one) when the batch claim skipped
        some ids or InnoDB chose the transaction as a deadlock victim: the whole transaction
        was rolled back, so nothing of it is stored twice (idempotency.retrying_claims)."""
        return idempotency.retrying_claims(
            lambda one_by_one: self._insert(rows, ids, literals, one_by_one=one_by_one))

    def _insert(self, rows: list[tuple[Any, ...]], ids: list[str | None],
                literals: list[str] | None = None, *, one_by_one: bool = False) -> int:
        """Insert ``rows`` in one transaction, skipping those whose event id is already stored
        (claimed in the same transaction); returns how many were skipped."""
        claimed_any = any(ids)
        with self._connection() as conn:
            # No gap locks for the claim's locking reads (idempotency.claim). A kept connection
            # is in READ COMMITTED already (_connection). Otherwise for this transaction only:
            # one statement, where setting the session's level (and the pool's resetting it)
            # took four round trips, each one a wait for the GIL when another thread is busy
            # (bench/consume.py). But a session in autocommit (an engine handed in with
            # isolation_level="AUTOCOMMIT") would commit the claims apart from their rows: there
            # the level is set the dialect's way, which also ends autocommit.
            per_transaction = False
            if (claimed_any and self._literal_batches
                    and conn.get_execution_options().get("isolation_level") != _LEVEL):
                dbapi: Any = conn.connection.dbapi_connection
                per_transaction = not dbapi.get_autocommit()
                if not per_transaction:
                    conn.execution_options(isolation_level=_LEVEL)
            with conn.begin():
                if per_transaction:
                    conn.exec_driver_sql(_READ_COMMITTED)
                if claimed_any:
                    rows, literals = self._claimed_rows(conn, rows, ids, literals, one_by_one)
                self._insert_rows(conn, rows, literals)
        if claimed_any and _dice.random() < 1 / _FORGET_EVERY:
            self._forget_expired()
        return len(ids) - len(rows)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The connection for one batch's transaction.

        By default one from the pool each time: pinged when checked out and rolled back when
        given back, two round trips a batch besides its statements. With ``keep_connection``
        (a queue consumer, whose store thread writes batch after batch), the connection of the
        batch before, if that was within ``keep_connection`` seconds and the server has not
        closed it since; it is set to READ COMMITTED once, where each transaction would begin
        with a SET. A backlog then costs three round trips a batch (the claims, the rows, the
        COMMIT) where it cost six, and a store thread waits for the GIL after each
        (bench/consume.py). A batch that comes more than ``keep_connection`` seconds after the
        one before gives the kept connection back and checks one out (and so pings it) again;
        so does one that finds it closed by the server (dropped, not rolled back: there is
        nobody to answer). The holder gives it back when idle (the consumer, at a read that
        finds the stream empty) with :meth:`release_connection`. An error gives it back too:
        the pool rolls it back, or drops it when the error says it is broken; only a
        :class:`ClaimConflict` keeps it, the normal answer to a redelivered batch, after which
        ``begin()`` has rolled the transaction back."""
        if not self.keep_connection:
            with self.engine.connect() as conn:
                yield conn
            return
        if self._kept is not None:
            if _closed_by_server(self._kept):
                self.release_connection(broken=True)
            elif time.monotonic() > self._kept_until:
                self.release_connection()
        if self._kept is None:
            self._kept = self.engine.connect()
        kept = self._kept
        try:
            if self._literal_batches and kept.get_execution_options().get("isolation_level") != _LEVEL:
                kept.execution_options(isolation_level=_LEVEL)
            yield kept
        except ClaimConflict:
            if kept.invalidated or kept.in_transaction():
                self.release_connection()
            raise
        except BaseException:
            self.release_connection()
            raise
        self._kept_until = time.monotonic() + self.keep_connection

    def release_connection(self, *, broken: bool = False) -> None:
        """Give the connection kept between batches (``keep_connection``) back to the pool;
        ``broken``: drop it instead (the pool's ROLLBACK on a closed socket would only fail,
        and log that as an error)."""
        conn, self._kept = self._kept, None
        if conn is not None:
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                if broken and not (conn.invalidated or conn.closed):
                    conn.invalidate()
                conn.close()

    def _insert_rows(self, conn: Connection, rows: list[tuple[Any, ...]],
                     literals: list[str] | None = None) -> None:
        """The batch's multi-row INSERT (PyMySQL: literal text, from ``literals`` when they were
        built for this session's escaping; SQLite: executemany)."""
        if rows and self._literal_batches:
            # Our engines' sessions never have NO_BACKSLASH_ESCAPES (trace_service.sql_modes),
            # but an engine passed in may: escape as this session reads, like PyMySQL does.
            plain = not backslash_escapes_off(conn.connection.dbapi_connection)
            statements = (join_statements(self._prefix, literals) if plain and literals is not None
                          else mysql_statements(self._prefix, rows, backslash_escapes=plain))
            for statement in statements:
                conn.exec_driver_sql(statement, execution_options=NO_PARAMETERS)
        elif rows:
            conn.exec_driver_sql(self._sql, rows if len(rows) > 1 else rows[0])

    def _claimed_rows(self, conn: Connection, rows: list[tuple[Any, ...]], ids: list[str | None],
                      literals: list[str] | None, one_by_one: bool
                      ) -> tuple[list[tuple[Any, ...]], list[str] | None]:
        """The rows to store, and their literals when given: those without an event id, and
        the first row of each id that this transaction claimed."""
        now = idempotency.utc_now()
        claimed = idempotency.claim(conn, (i for i in ids if i), self.idempotency_window, now,
                                    one_by_one=one_by_one)
        kept = []
        kept_literals: list[str] = []
        for index, (row, event_id) in enumerate(zip(rows, ids, strict=True)):
            if event_id is not None:
                if event_id not in claimed:
                    continue
                claimed.discard(event_id)  # a second copy in the same batch is a duplicate
            kept.append(row)
            if literals is not None:
                kept_literals.append(literals[index])
        return kept, (kept_literals if literals is not None else None)

    def _forget_expired(self) -> None:
        """Housekeeping in its own transaction; a failure only delays it to a later batch."""
        with contextlib.suppress(sa_exc.SQLAlchemyError):
            idempotency.forget_expired(self.engine, self.idempotency_window, idempotency.utc_now())


def _closed_by_server(conn: Connection) -> bool:
    """Whether the server has closed (or written to) an idle kept connection: its socket reads
    as ready when nothing was asked of it. MariaDB closes a connection idle past
    ``wait_timeout``, a restart closes them all, ``KILL`` closes one; sending a batch there would
    fail it (and, the write sent, leave its fate unknown to the client). One non-blocking poll,
    no round trip: the check that Go's MySQL driver makes before reusing a connection. PyMySQL
    has no public accessor for its socket; without one (another driver) this says False and a
    failed batch gives the connection back instead."""
    if conn.invalidated or conn.closed:
        return True
    sock = getattr(conn.connection.dbapi_connection, "_sock", False)
    if sock is False:
        return False
    if sock is None:  # PyMySQL closed it
        return True
    poller = select.poll()  # not select.select: it refuses descriptors past 1023
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
