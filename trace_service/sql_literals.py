"""Literal SQL values for MySQL/MariaDB, escaped as the session reads them (pure).

The writer's multi-row INSERT and the idempotency claims of a batch are built as literal text
rather than bound parameters: binding 500 rows went through SQLAlchemy's and PyMySQL's per-value
dispatch, which cost more than the database's own work (bench/writer.py, bench/consume.py).
What is built here is what PyMySQL's ``executemany`` would send, with the same escaping: property
tests hold :func:`row_literal` equal to PyMySQL's ``escape_string`` and
:func:`row_literal_no_backslash` to its ``NO_BACKSLASH_ESCAPES`` escaping, and the literal rows
equal to what the server stores in both modes (tests/trace_service/test_sql_modes.py).

Values are ``str``, ``int`` and ``None`` only (what ``build_row`` yields); a caller with other
types converts them first.
"""

from __future__ import annotations

from typing import Any

# PyMySQL's own executemany() splits its multi-row statements at this many bytes.
MAX_STATEMENT_CHARS = 1_000_000
# The execution options to send a statement built here with (``exec_driver_sql(statement,
# execution_options=NO_PARAMETERS)``): the driver must not %-format text that holds data. Per
# statement, not with Connection.execution_options(), which sets it for the connection's life.
NO_PARAMETERS = {"no_parameters": True}


def escape(text: str) -> str:
    """PyMySQL's ``escape_string``, as chained C-level replaces (backslash first).

    Same mapping as PyMySQL's table (a property test checks it); ``str.translate`` with that
    table looks every character up one by one and was 4x slower on metadata-sized strings.
    Right only where backslashes escape (see :func:`row_literal_no_backslash`).
    """
    return (
        text.replace("\\", "\\\\").replace("\0", "\\0").replace("\n", "\\n")
        .replace("\r", "\\r").replace("\032", "\\Z").replace('"', '\\"').replace("'", "\\'")
    )


def row_literal(row: tuple[Any, ...]) -> str:
    """``(v1,v2,...)`` for one row: NULL, integers, and strings quoted and escaped (escaping is
    skipped when nothing needs it: \\0 \\n \\r \\032 are not printable). Inlined: it runs for
    every value of every row.

    Hot path, hand-built SQL (the writer's throughput in bench/writer.py): literal rows folded
    into one multi-row INSERT, as PyMySQL's executemany does, without its per-row format pass.
    ``int.__repr__`` skips the ``str()`` dispatch (``repr`` of an int subclass such as a bool
    would differ, but ``type(value) is int`` admits none). Safe in every sql_mode: the session's
    mode is fixed by trace_service.sql_modes, and the NO_BACKSLASH_ESCAPES twin below takes
    over where it is on; property tests hold both equal to PyMySQL's own escaping."""
    parts = []
    for value in row:
        if value is None:
            parts.append("NULL")
        elif type(value) is int:
            parts.append(int.__repr__(value))
        elif value.isprintable() and "'" not in value and '"' not in value and "\\" not in value:
            parts.append("'" + value + "'")
        else:
            parts.append("'" + escape(value) + "'")
    return "(" + ",".join(parts) + ")"


def row_literal_no_backslash(row: tuple[Any, ...]) -> str:
    """:func:`row_literal` for a session with ``NO_BACKSLASH_ESCAPES``: there only ``'`` ends a
    literal, and every other character (NUL, ``\\``, newline) stands for itself (PyMySQL's
    ``Connection._escape_string`` in that mode: ``'`` doubled, nothing else). A twin of
    :func:`row_literal` on purpose: one function testing the mode per value would tax every
    value of every row on the common path (bench/writer.py)."""
    parts = []
    for value in row:
        if value is None:
            parts.append("NULL")
        elif type(value) is int:
            parts.append(int.__repr__(value))
        elif "'" not in value:
            parts.append("'" + value + "'")
        else:
            parts.append("'" + value.replace("'", "''") + "'")
    return "(" + ",".join(parts) + ")"


def mysql_statements(
    prefix: str, rows: list[tuple[Any, ...]], *, backslash_escapes: bool = True
) -> list[str]:
    """Multi-row INSERT statements for ``rows``, each under :data:`MAX_STATEMENT_CHARS`.

    What PyMySQL's ``executemany`` builds, with the same escaping, minus its per-value type
    dispatch: build_row yields only str, int and None, and escaping was about half of the
    writer thread's time (bench/writer.py). ``backslash_escapes`` must say how the session that
    runs them reads ``\\`` (False under ``NO_BACKSLASH_ESCAPES``), as PyMySQL's own escaping does.
    """
    literal = row_literal if backslash_escapes else row_literal_no_backslash
    return join_statements(prefix, [literal(row) for row in rows])


def join_statements(prefix: str, literals: list[str]) -> list[str]:
    """Multi-row INSERT statements of row literals (:func:`row_literal` or its twin), each
    under :data:`MAX_STATEMENT_CHARS`, as :func:`mysql_statements` builds them."""
    statements = []
    chunk: list[str] = []
    size = len(prefix)
    for values in literals:
        if chunk and size + len(values) + 1 > MAX_STATEMENT_CHARS:
            statements.append(prefix + ",".join(chunk))
            chunk, size = [], len(prefix)
        chunk.append(values)
        size += len(values) + 1
    if chunk:
        statements.append(prefix + ",".join(chunk))
    return statements
