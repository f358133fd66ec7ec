"""The session ``sql_mode`` our MySQL/MariaDB connections run with.

Hand-built SQL in this project (the writer's multi-row INSERT, identifiers in f-strings) and the
audit_logs guard's parser both read SQL the default way: ``\\`` escapes inside string literals,
``"`` quotes strings, ``||`` is OR. A DBA may set server-wide modes that change that:

* ``NO_BACKSLASH_ESCAPES``: ``\\`` is an ordinary character, so ``'a\\'`` ends the literal early;
* ``ANSI_QUOTES``: ``"x"`` is an identifier, not a string;
* ``PIPES_AS_CONCAT``: ``||`` concatenates instead of OR;
* ``HIGH_NOT_PRECEDENCE``: ``NOT a BETWEEN b AND c`` groups differently;
* ``EMPTY_STRING_IS_NULL`` (MariaDB): the literal ``''`` is read as NULL, so an empty value would
  not be stored as sent;
* the combinations ``ANSI``, ``ORACLE``, ``MSSQL``, ``DB2``, ``POSTGRESQL``, ``MAXDB``: MariaDB lists
  the combination's own name next to what it implies, and setting a list that still holds the name
  brings the implied modes back; ``ORACLE`` and ``MSSQL`` also switch MariaDB's parser.

:func:`literal_safe_mode` (pure) removes exactly those and keeps every other mode the DBA chose
(strictness, zero dates, ...). :func:`normalise_session` is the ``connect`` listener that
``trace_service.db.create_engine`` installs on every MySQL/MariaDB engine.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("trace_service.sql_modes")

PARSE_CHANGING_MODES = frozenset({
    "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES", "PIPES_AS_CONCAT", "HIGH_NOT_PRECEDENCE",
    "EMPTY_STRING_IS_NULL", "ANSI", "ORACLE", "MSSQL", "DB2", "POSTGRESQL", "MAXDB",
})
# PyMySQL's SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES: set in the status of every OK/EOF
# packet while the session has the mode (PyMySQL keeps the last one in Connection.server_status).
NO_BACKSLASH_ESCAPES_FLAG = 512


def literal_safe_mode(mode: str) -> str:
    """``mode`` (a ``@@sql_mode`` value) without :data:`PARSE_CHANGING_MODES`, order kept."""
    return ",".join(name for name in mode.split(",") if name and name.upper() not in PARSE_CHANGING_MODES)


def backslash_escapes_off(dbapi_connection: Any) -> bool:
    """Whether the session behind a PyMySQL connection reads ``\\`` literally (as of its last
    reply); other drivers report False."""
    status = getattr(dbapi_connection, "server_status", None)
    return bool(status and status & NO_BACKSLASH_ESCAPES_FLAG)


def normalise_session(dbapi_connection: Any, _record: Any) -> None:
    """SQLAlchemy ``connect`` listener: drop the parse-changing modes from the new session."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT @@SESSION.sql_mode")
        (current,) = cursor.fetchone()
        current = current.decode() if isinstance(current, bytes) else str(current or "")
        wanted = literal_safe_mode(current)
        if wanted != current:
            # A bound value: PyMySQL escapes it the way the session (still in the old mode) reads.
            cursor.execute("SET SESSION sql_mode = %s", (wanted,))
            removed = sorted(set(current.split(",")) - set(wanted.split(",")))
            logger.debug("removed sql_mode %s from a new session", ",".join(removed))
    finally:
        cursor.close()
