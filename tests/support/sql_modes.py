"""Server-wide sql_mode windows and hostile text, for the tests of literal-parsing modes.

The MariaDB server is shared with other test runs, so a window is short, serialised with a named
lock (two windows must not save each other's mode), and always restored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_LOCK = "ts_test_global_sql_mode"

# Each one ends, breaks or escapes a literal in some mode, or rides on one that does.
HOSTILE = [
    "it's", 'say "hi"', "back\\slash", "ends in a backslash\\", "\\", "\\'", "''", '""',
    "*/ closes", "/* opens", "-- dash comment", "# hash comment", "semi;colon", "nul\x00byte",
    "ctrl-z\x1a", "line\nbreak", "carriage\rreturn", "😀 Zoë 日本 𝄞", "a || b", "%s %(x)s 100%",
    "x'); DROP TABLE telemetry_traces; -- ", "\\'); DELETE FROM audit_logs; #",
    "\\\"); UPDATE audit_logs SET action = 'x'; /*", "",
]
PRINTABLE_HOSTILE = [text for text in HOSTILE if text.isprintable()]

MODES = {  # what a DBA might set server-wide, strictness included (it must survive)
    "no_backslash_escapes": "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES",
    "ansi_quotes": "STRICT_TRANS_TABLES,ANSI_QUOTES",
    "ansi": "STRICT_TRANS_TABLES,ANSI,NO_BACKSLASH_ESCAPES",
    "pipes_as_concat": "STRICT_TRANS_TABLES,PIPES_AS_CONCAT,EMPTY_STRING_IS_NULL",
}


@contextmanager
def global_sql_mode(server: Engine, mode: str) -> Iterator[None]:
    """``SET GLOBAL sql_mode = mode`` for the block (new connections get it), then restore."""
    with server.connect() as holder:
        got = holder.execute(sa.text("SELECT GET_LOCK(:name, 60)"), {"name": _LOCK}).scalar()
        assert got == 1, f"the named lock {_LOCK} stayed taken for 60 s: is a test run stuck?"
        try:
            saved = holder.execute(sa.text("SELECT @@GLOBAL.sql_mode")).scalar_one()
            holder.execute(sa.text("SET GLOBAL sql_mode = :mode"), {"mode": mode})
            try:
                yield
            finally:
                holder.execute(sa.text("SET GLOBAL sql_mode = :mode"), {"mode": saved})
        finally:
            holder.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK})


def session_mode(engine: Engine) -> set[str]:
    """The sql_mode names of a session from ``engine``'s pool."""
    with engine.connect() as conn:
        return set(filter(None, str(conn.execute(sa.text("SELECT @@SESSION.sql_mode")).scalar()).split(",")))


def snapshot(engine: Engine, skip: tuple[str, ...] = ("telemetry_traces",)) -> dict[str, list[Any]]:
    """Every table but those in ``skip``, with all its rows: to show nothing else was altered."""
    with engine.connect() as conn:
        tables = sorted(str(t) for t in conn.execute(sa.text("SHOW TABLES")).scalars())
        return {table: [tuple(row) for row in conn.exec_driver_sql(f"SELECT * FROM `{table}`")]
                for table in tables if table not in skip}
