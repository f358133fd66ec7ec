"""Server sql_modes that change how literals parse: our sessions drop them, and the writer's
literals are right whatever the session reads (trace_service.sql_modes, trace_service.sink)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from governance.errors import ClaimConflict
from tests.support.audit_table import plant_audit_logs
from tests.support.sql_modes import HOSTILE, MODES, PRINTABLE_HOSTILE, session_mode, snapshot
from tests.trace_service.http.test_ingest import make_ingest
from trace_service import idempotency, migrate
from trace_service.config import DatabaseURL
from trace_service.db import create_engine
from trace_service.http.config import TestingConfig
from trace_service.php_json import encode_metadata
from trace_service.reader import StoredTrace, read_traces
from trace_service.sql_literals import mysql_statements, row_literal, row_literal_no_backslash
from trace_service.sql_modes import (
    NO_BACKSLASH_ESCAPES_FLAG,
    PARSE_CHANGING_MODES,
    backslash_escapes_off,
    literal_safe_mode,
)
from trace_service.writer import TraceWriter

Window = Callable[[str], AbstractContextManager[None]]
KEPT = ["STRICT_TRANS_TABLES", "STRICT_ALL_TABLES", "NO_ZERO_DATE", "ERROR_FOR_DIVISION_BY_ZERO",
        "NO_ENGINE_SUBSTITUTION", "IGNORE_SPACE", "REAL_AS_FLOAT", "TRADITIONAL", "ONLY_FULL_GROUP_BY"]


# ---------------------------------------------------------------- the mode, as a pure function


@pytest.mark.parametrize(("mode", "safe"), [
    ("", ""),
    ("STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES", "STRICT_TRANS_TABLES"),
    ("ANSI_QUOTES,NO_BACKSLASH_ESCAPES", ""),
    # What MariaDB 10.11 reports for SET sql_mode='ANSI' and ='ORACLE':
    ("REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI", "REAL_AS_FLOAT,IGNORE_SPACE"),
    ("PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ORACLE,NO_KEY_OPTIONS,NO_TABLE_OPTIONS,"
     "NO_FIELD_OPTIONS,NO_AUTO_CREATE_USER,SIMULTANEOUS_ASSIGNMENT",
     "IGNORE_SPACE,NO_KEY_OPTIONS,NO_TABLE_OPTIONS,NO_FIELD_OPTIONS,NO_AUTO_CREATE_USER,"
     "SIMULTANEOUS_ASSIGNMENT"),
    ("STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION",
     "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"),
])
def test_literal_safe_mode_cases(mode: str, safe: str) -> None:
    assert literal_safe_mode(mode) == safe


@given(st.lists(st.sampled_from(sorted(PARSE_CHANGING_MODES) + KEPT), unique=True))
def test_literal_safe_mode_drops_exactly_the_parse_changing_modes(names: list[str]) -> None:
    safe = literal_safe_mode(",".join(names))
    assert (safe.split(",") if safe else []) == [n for n in names if n not in PARSE_CHANGING_MODES]
    assert literal_safe_mode(safe) == safe


@pytest.mark.parametrize("combination", ["ANSI", "ORACLE", "MSSQL", "DB2", "POSTGRESQL", "MAXDB"])
def test_the_safe_mode_stays_safe_once_the_server_expands_it(
    mariadb_server: Engine, combination: str
) -> None:
    """MariaDB expands a combination on SET: what we set must not bring a removed mode back."""
    with mariadb_server.connect() as conn:
        conn.execute(sa.text("SET SESSION sql_mode = :m"), {"m": f"STRICT_ALL_TABLES,{combination}"})
        reported = str(conn.execute(sa.text("SELECT @@SESSION.sql_mode")).scalar())
        conn.execute(sa.text("SET SESSION sql_mode = :m"), {"m": literal_safe_mode(reported)})
        after = set(str(conn.execute(sa.text("SELECT @@SESSION.sql_mode")).scalar()).split(","))
        conn.invalidate()  # this session's mode is the test's own: never back to the pool
    assert "STRICT_ALL_TABLES" in after
    assert not after & PARSE_CHANGING_MODES


# ---------------------------------------------------------------- the fast path vs PyMySQL

SPECIAL = st.sampled_from(["\x00", "\\", "'", '"', "\x1a", "\n", "\r", "''", "\\'", "😀", "𝄞", "%s"])
TEXT = st.lists(st.text() | SPECIAL).map("".join)


def _pymysql(no_backslash_escapes: bool) -> pymysql.connections.Connection:
    """A PyMySQL connection object (never connected) whose status says how its session reads."""
    conn = pymysql.connections.Connection(defer_connect=True)
    conn.server_status = NO_BACKSLASH_ESCAPES_FLAG if no_backslash_escapes else 0
    return conn


@given(TEXT, TEXT)
def test_literals_are_pymysqls_own_in_both_modes(first: str, second: str) -> None:
    for off, literal in [(False, row_literal), (True, row_literal_no_backslash)]:
        conn = _pymysql(off)
        assert backslash_escapes_off(conn) is off
        assert literal((first, None, 7, second)) == f"({conn.escape(first)},NULL,7,{conn.escape(second)})"


def test_statements_follow_the_sessions_escaping() -> None:
    rows = [("a\\", "b'")]
    assert mysql_statements("P ", rows) == ["P ('a\\\\','b\\'')"]
    assert mysql_statements("P ", rows, backslash_escapes=False) == ["P ('a\\','b''')"]


# ---------------------------------------------------------------- on the server, modes set GLOBAL


@pytest.fixture
def scene(mariadb_url: str) -> Iterator[Engine]:
    """The test database migrated, with an audit_logs row next to it (set up in the normal mode)."""
    plant_audit_logs(mariadb_url)
    engine = create_engine(mariadb_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("mode", [*MODES.values(), "STRICT_ALL_TABLES,ORACLE", "MSSQL,TRADITIONAL"])
def test_our_sessions_drop_the_parse_changing_modes_and_keep_the_rest(
    mariadb_url: str, server_sql_mode: Window, mode: str
) -> None:
    engine = create_engine(mariadb_url)
    foreign = sa.create_engine(mariadb_url)
    try:
        with server_sql_mode(mode):
            ours, theirs = session_mode(engine), session_mode(foreign)
            with engine.connect() as conn:
                status_off = backslash_escapes_off(conn.connection.dbapi_connection)
    finally:
        engine.dispose()
        foreign.dispose()
    assert theirs & PARSE_CHANGING_MODES  # the server really handed out the mode
    assert not ours & PARSE_CHANGING_MODES
    assert ours == theirs - PARSE_CHANGING_MODES  # strictness and the rest kept
    assert status_off is False  # PyMySQL's escaping follows the OK packet of our SET
    # The dialect read sql_mode after our listener: backticks, backslash escaping.
    assert engine.dialect.identifier_preparer.initial_quote == "`"


def _stored_as_sent(row: StoredTrace, text: str) -> None:
    assert (row.user_agent, row.route_name) == (text, text)
    assert row.metadata_text == encode_metadata({"v": text, f"k{text}": [text]})


@pytest.mark.parametrize("mode", MODES.values(), ids=list(MODES))
def test_the_writer_stores_hostile_text_byte_for_byte(
    scene: Engine, mariadb_url: str, server_sql_mode: Window, mode: str
) -> None:
    before = snapshot(scene)
    config = TestingConfig(database_url=DatabaseURL(mariadb_url))
    with server_sql_mode(mode):
        writer = TraceWriter.from_config(config, strict=True)  # its connections: all in the window
        try:
            for text in HOSTILE:
                assert writer.record("x.hostile", user_agent=text, route_name=text,
                                     metadata={"v": text, f"k{text}": [text]})
            assert writer.flush(10)
            stats = writer.stats()
        finally:
            writer.close(2)
    assert (stats.written, stats.dropped) == (len(HOSTILE), 0), stats.dropped_by_reason
    stored = read_traces(scene)
    assert len(stored) == len(HOSTILE)
    for row, text in zip(stored, HOSTILE, strict=True):
        _stored_as_sent(row, text)
    assert snapshot(scene) == before


def test_the_sink_escapes_for_a_foreign_engines_no_backslash_session(scene: Engine, mariadb_url: str) -> None:
    """An engine we did not make (no mode clean-up) whose sessions read ``\\`` literally."""
    foreign = sa.create_engine(mariadb_url)

    @sa.event.listens_for(foreign, "connect")
    def _no_backslash(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES'")

    before = snapshot(scene)
    writer = TraceWriter(foreign, TestingConfig(database_url=DatabaseURL(mariadb_url)), strict=True)
    try:
        for text in HOSTILE:
            writer.record("x.hostile", user_agent=text, route_name=text,
                          metadata={"v": text, f"k{text}": [text]})
        assert writer.flush(10)
        stats = writer.stats()
        assert "NO_BACKSLASH_ESCAPES" in session_mode(foreign)
    finally:
        writer.close(2)
        foreign.dispose()
    assert (stats.written, stats.dropped) == (len(HOSTILE), 0), stats.dropped_by_reason
    for row, text in zip(read_traces(scene), HOSTILE, strict=True):
        _stored_as_sent(row, text)
    assert snapshot(scene) == before


@pytest.mark.parametrize("mode", MODES.values(), ids=list(MODES))
def test_ingest_stores_hostile_text_byte_for_byte(
    mariadb_url: str, server_sql_mode: Window, mode: str
) -> None:
    with server_sql_mode(mode):
        ingest = make_ingest(mariadb_url)
        try:
            body = [{"event_key": "x.hostile", "user_agent": text or "-",
                     "route_name": PRINTABLE_HOSTILE[i % len(PRINTABLE_HOSTILE)],
                     "metadata": {"v": text, f"k{text}": [text]}, "event_id": str(uuid.uuid4())}
                    for i, text in enumerate(HOSTILE)]
            response = ingest.post(body)
            stored = ingest.stored()
            stats = ingest.app.extensions["trace_writer"].stats()
        finally:
            ingest.app.extensions["trace_writer"].close(2)
            ingest.app.extensions["trace_engine"].dispose()
    assert response.status_code == 202 and response.json["accepted"] == len(HOSTILE), response.json
    assert stats.dropped == 0, stats.dropped_by_reason
    assert [(r.user_agent, r.route_name, r.metadata_text) for r in stored] == [
        (item["user_agent"], item["route_name"], encode_metadata(item["metadata"])) for item in body]


@pytest.mark.parametrize("mode", ["STRICT_ALL_TABLES", "STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES"])
def test_a_batch_claim_of_hostile_event_ids_is_stored_verbatim(scene: Engine, mariadb_url: str,
                                                               mode: str) -> None:
    """The batch claim is literal SQL: an id from a forged stream entry holding quotes or
    backslashes is stored as it is (and then found as a duplicate, by the batch claim's count
    and one by one), in either backslash mode."""
    foreign = sa.create_engine(mariadb_url)

    @sa.event.listens_for(foreign, "connect")
    def _mode(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET SESSION sql_mode = '{mode}'")

    ids = sorted({text[:36] for text in PRINTABLE_HOSTILE if text} | {str(uuid.uuid4())})
    now = datetime(2030, 1, 1)
    try:
        with foreign.begin() as conn:
            assert idempotency.claim(conn, ids, 3600, now) == set(ids)
        # Claimed again as a batch, every id is there: the batch claim says so and rolls back,
        # and one by one each is a duplicate.
        with pytest.raises(ClaimConflict, match=f"{len(ids)} of {len(ids)} "), foreign.begin() as conn:
            idempotency.claim(conn, ids, 3600, now)
        with foreign.begin() as conn:
            assert idempotency.claim(conn, ids, 3600, now, one_by_one=True) == set()
        with scene.connect() as conn:
            stored = conn.execute(sa.text("SELECT event_id FROM trace_ingest_events")).scalars()
            assert sorted(stored) == ids
    finally:
        foreign.dispose()
