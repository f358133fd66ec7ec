"""Engines and the live table's layout: the I/O edge of the trace service.

Every engine the project creates comes from :func:`create_engine`, so connection timeouts,
hidden parameters (no row values in error messages), the session's sql_mode (no mode that changes
how literals and identifiers parse: ``trace_service.sql_modes``) and the audit_logs guard are set
in one place. :func:`table_layout` looks at the live table's columns once per engine and caches the
answer (``trace_service.layout`` does the deciding).
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from governance import audit_guard
from governance.audit_guard import DEFAULT_PROTECTED
from trace_service.config import DatabaseURL
from trace_service.layout import TABLE_NAME, Layout, detect_layout
from trace_service.sql_modes import normalise_session

_layouts: weakref.WeakKeyDictionary[Engine, Layout] = weakref.WeakKeyDictionary()
_layouts_lock = threading.Lock()


def _with_driver(url: URL) -> URL:
    """``mysql://`` and ``mariadb://`` mean PyMySQL here (the only MySQL driver we depend on)."""
    if url.drivername in {"mysql", "mariadb"}:
        return url.set(drivername=f"{url.drivername}+pymysql")
    return url


def create_engine(
    database_url: DatabaseURL | str,
    *,
    connect_timeout: float = 2.0,
    io_timeout: float = 5.0,
    pool_size: int = 5,
    protected_tables: Iterable[str] = DEFAULT_PROTECTED,
    **kwargs: Any,
) -> Engine:
    """An engine with bounded connect/read/write timeouts, parameters hidden from errors, MySQL
    sessions without parse-changing sql_modes, and the audit_logs guard installed (it refuses
    writes to ``protected_tables``)."""
    if isinstance(database_url, str):
        database_url = DatabaseURL(database_url)
    url = _with_driver(database_url.url)
    connect_args: dict[str, Any] = {}
    options: dict[str, Any] = {"hide_parameters": True}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # The writer's own thread uses its own connection; SQLite must allow that.
        connect_args.update(check_same_thread=False, timeout=io_timeout)
    else:
        connect_args.update(
            connect_timeout=connect_timeout,
            read_timeout=io_timeout,
            write_timeout=io_timeout,
            charset="utf8mb4",
        )
        if kwargs.get("poolclass") is not sa.pool.NullPool:  # NullPool takes no pool settings
            options.update(pool_size=pool_size, max_overflow=0, pool_recycle=3600,
                           pool_pre_ping=True, pool_timeout=connect_timeout)
    connect_args.update(kwargs.pop("connect_args", {}))
    options.update(kwargs)
    engine = sa.create_engine(url, connect_args=connect_args, **options)
    if url.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    elif is_mysql(engine):
        # insert=True: ahead of the dialect's own first-connect initialize(), which reads
        # sql_mode once to choose its identifier quoting (ANSI_QUOTES) and literal escaping.
        sa.event.listen(engine, "connect", normalise_session, insert=True)
    audit_guard.install(engine, protected_tables)
    return engine


def is_mysql(engine: Engine) -> bool:
    """MySQL or MariaDB (named locks, partitions, grants), as opposed to SQLite."""
    return engine.dialect.name in {"mysql", "mariadb"}


# The MySQL/MariaDB error codes the project acts on (see error_code()).
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213  # the whole transaction was rolled back: running it again is safe
CR_SERVER_LOST = 2013  # the connection died mid-statement: a commit may or may not have happened
ER_NO_SUCH_TABLE = 1146


def error_code(exc: BaseException) -> int | None:
    """The server's or driver's numeric error code behind a SQLAlchemy error (MySQL's 1205...)."""
    args = tuple(getattr(getattr(exc, "orig", None), "args", ()))
    return args[0] if args and isinstance(args[0], int) else None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets the web process read while the writer thread writes. The mode is kept in the
    file, so only the first connection to a new file switches it. Switching needs the file to
    itself: while another connection is in a transaction on a file not yet in WAL (the app's
    threads opening a new file at start, a migration running), the switch waits out the busy
    timeout and fails with "database is locked". Such a connection goes on in the file's current
    mode rather than fail its caller; a later connection switches the file."""
    cursor = dbapi_connection.cursor()
    try:
        (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
    finally:
        cursor.close()


def read_columns(engine: Engine, table: str = TABLE_NAME) -> dict[str, int | None]:
    """Column names of ``table`` with their character lengths (None for unbounded types)."""
    inspector = sa.inspect(engine)
    if not inspector.has_table(table):
        return {}
    return {
        column["name"]: getattr(column["type"], "length", None)
        for column in inspector.get_columns(table)
    }


def table_layout(engine: Engine) -> Layout:
    """The layout of the live ``telemetry_traces``, detected once per engine and cached."""
    layout = _layouts.get(engine)
    if layout is None:
        columns = read_columns(engine)
        layout = detect_layout(columns, columns)
        with _layouts_lock:
            _layouts[engine] = layout
    return layout


def forget_layout(engine: Engine) -> None:
    """Drop the cached layout (after a migration, or when the table was replaced)."""
    with _layouts_lock:
        _layouts.pop(engine, None)
