"""MySQL named locks (``GET_LOCK``): one scheduler leader across hosts, one run of a job at a time.

A named lock belongs to a connection and is released when that connection ends, so a crashed
holder never leaves it taken. :class:`NamedLock` keeps its own connection for as long as it
holds the lock. Lock names are server-wide, so each is taken as ``<database>.<name>``: two
databases on one server (staging beside production, or two test runs) never share a leader or
block each other's runs. SQLite has no such lock: there the database is a local file of one host, and
the lock is a process-local one.
"""

from __future__ import annotations

import hashlib
import threading
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from trace_service.db import is_mysql

_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()

LEADER_LOCK = "telemetry_traces.scheduler"
RETENTION_LOCK = "telemetry_traces.retention"
_MAX_NAME = 64  # MariaDB and MySQL refuse longer user-level lock names


def server_lock_name(database: str | None, name: str) -> str:
    """The server-wide name of lock ``name`` for ``database`` (a digest when it would be too long)."""
    scoped = f"{database or ''}.{name}"
    if len(scoped) <= _MAX_NAME:
        return scoped
    digest = hashlib.sha256((database or "").encode()).hexdigest()[:_MAX_NAME - len(name) - 1]
    return f"{digest}.{name}"


class NamedLock:
    """``with NamedLock(engine, name) as held:`` holds the lock when ``held`` is True."""

    def __init__(self, engine: Engine, name: str, timeout: float = 0) -> None:
        self.engine, self.name, self.timeout = engine, name, timeout
        self.server_name = server_lock_name(engine.url.database, name)
        self._conn: Connection | None = None
        self._local: threading.Lock | None = None
        self.held = False

    def acquire(self) -> bool:
        """Try to take the lock, waiting up to ``timeout`` seconds."""
        if not is_mysql(self.engine):
            with _local_guard:
                self._local = _local_locks.setdefault(self.server_name, threading.Lock())
            if self.timeout > 0:
                self.held = self._local.acquire(timeout=self.timeout)
            else:
                self.held = self._local.acquire(blocking=False)
            return self.held
        self._conn = self.engine.connect()
        got = self._conn.execute(sa.text("SELECT GET_LOCK(:name, :timeout)"),
                                 {"name": self.server_name, "timeout": self.timeout}).scalar()
        self._conn.commit()
        self.held = got == 1
        if not self.held:
            self._close()
        return self.held

    def still_held(self) -> bool:
        """Is the lock still ours? False once its connection died (the server released it)."""
        if not self.held:
            return False
        if self._conn is None:
            return True
        try:
            mine = self._conn.execute(sa.text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()"),
                                      {"name": self.server_name}).scalar()
            self._conn.commit()
        except sa.exc.DBAPIError:
            mine = False
        if not mine:
            self.held = False
            self._close()
        return bool(mine)

    def release(self) -> None:
        """Give the lock back (closing its connection would too)."""
        if self.held and self._local is not None:
            self._local.release()
        if self.held and self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": self.server_name})
                self._conn.commit()
            except sa.exc.DBAPIError:
                pass  # the connection is gone, and the server released the lock with it
        self.held = False
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
