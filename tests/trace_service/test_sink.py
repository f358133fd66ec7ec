"""Rows and statements the sink builds, and what the database keeps of them."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from pymysql.converters import escape_string
from sqlalchemy.engine import Engine

from trace_service import migrate
from trace_service import sink as sink_module
from trace_service.db import create_engine
from trace_service.queue import TraceItem
from trace_service.reader import read_traces
from trace_service.sink import TraceSink
from trace_service.sql_literals import MAX_STATEMENT_CHARS, escape, mysql_statements, row_literal
from trace_service.writer import TraceWriter

HOSTILE = ["100%", "%s", "%(x)s", "it's", 'say "hi"', "back\\slash", "nul\x00byte", "line\nbreak",
           "ctrl-z\x1a", "tab\there", "😀 Zoë 日本", "'; DROP TABLE telemetry_traces; --"]


@given(st.text())
def test_escape_is_pymysqls_escape_string(text: str) -> None:
    assert escape(text) == escape_string(text)


@given(st.text())
def test_literal_fast_path_agrees_with_escaping(text: str) -> None:
    assert row_literal((text,)) == "('" + escape_string(text) + "')"


@pytest.mark.parametrize(("value", "literal"), [(None, "NULL"), (7, "7"), (-3, "-3"), ("a", "'a'")])
def test_literals_by_type(value: object, literal: str) -> None:
    assert row_literal((value, value)) == f"({literal},{literal})"


def test_statements_split_below_the_size_limit() -> None:
    rows = [("x" * 1000, i) for i in range(3000)]
    statements = mysql_statements("INSERT INTO t (a, b) VALUES ", rows)
    assert len(statements) > 1
    assert all(len(s) <= MAX_STATEMENT_CHARS for s in statements)
    assert sum(s.count("('") for s in statements) == 3000


def test_hostile_strings_are_stored_verbatim(
    migrated_engine: Engine, make_writer: Callable[..., TraceWriter]
) -> None:
    writer = make_writer()
    for text in HOSTILE:
        writer.record("x.hostile", route_name=text, user_agent=text, metadata={"v": text, text: 1})
    assert writer.flush(10)
    stored = read_traces(migrated_engine)
    assert [t.route_name for t in stored] == HOSTILE
    assert [t.user_agent for t in stored] == HOSTILE
    assert [t.metadata for t in stored] == [{"v": text, text: 1} for text in HOSTILE]


def test_a_batch_larger_than_one_statement_is_stored_whole(
    migrated_engine: Engine, make_writer: Callable[..., TraceWriter]
) -> None:
    writer = make_writer(batch_size=2000, queue_size=5000, flush_interval=5)
    for i in range(2000):
        writer.record("x.big", metadata={"i": i, "pad": "p" * 1000})
    assert writer.flush(60)
    stored = read_traces(migrated_engine)
    assert [t.metadata["i"] for t in stored] == list(range(2000))  # type: ignore[index]


# ------------------------------------------------------------------ a kept connection

def traces(prefix: str, count: int) -> list[TraceItem]:
    return [TraceItem(f"{prefix}.{i}", "info", None, None, None, None, None, None, time.time_ns(),
                      str(uuid.uuid4())) for i in range(count)]


class PoolLog:
    """Checkouts and checkins of an engine's pool, and the statements its connections ran."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        # The now-and-then cleanup of expired ids takes a connection of its own: not here.
        monkeypatch.setattr(sink_module, "_FORGET_EVERY", float("inf"))
        self.checkouts = self.checkins = 0
        self.statements: list[str] = []
        sa.event.listen(engine, "checkout", lambda *args: self._count("checkouts"))
        sa.event.listen(engine, "checkin", lambda *args: self._count("checkins"))
        sa.event.listen(engine, "before_cursor_execute",
                        lambda conn, cursor, statement, *args: self.statements.append(statement))

    def _count(self, name: str) -> None:
        setattr(self, name, getattr(self, name) + 1)


def test_a_kept_connection_serves_batch_after_batch_with_no_set_each(
        migrated_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = TraceSink(migrated_engine, "UTC", None, 3600.0, keep_connection=60.0)
    sink.layout()
    log = PoolLog(migrated_engine, monkeypatch)
    batches = [traces(f"k{n}", 5) for n in range(3)]
    for batch in batches:
        result = sink.write(batch)
        assert (result.written, result.dropped) == (5, {})
    assert (log.checkouts, log.checkins) == (1, 0)  # one checkout (and ping) for three batches
    mysql = migrated_engine.dialect.name != "sqlite"
    if mysql:
        # Per batch: the claims, the rows (COMMIT is the driver's). READ COMMITTED was set once,
        # on the session, not with a SET before each transaction.
        assert [s.split(" (")[0].split(" ")[2] for s in log.statements] == \
            ["trace_ingest_events", "telemetry_traces"] * 3
        assert sink._kept is not None
        assert sink._kept.exec_driver_sql("SELECT @@tx_isolation").scalar() == "READ-COMMITTED"
        sink._kept.rollback()
    # A batch delivered again: all duplicates (on MariaDB the batch claim's conflict, then id by
    # id), on the same connection, with no option of a single statement left on it.
    again = sink.write(batches[0])
    assert (again.written, again.duplicates, again.dropped) == (0, 5, {})
    assert (log.checkouts, log.checkins) == (1, 0)
    assert sink._kept is not None and "no_parameters" not in sink._kept.get_execution_options()
    sink.release_connection()
    assert log.checkins == 1 and migrated_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert len(read_traces(migrated_engine)) == 15
    if mysql:  # given back as the pool gave it: the server's level again
        with migrated_engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT @@tx_isolation").scalar() == "REPEATABLE-READ"


def test_a_kept_connection_idle_too_long_goes_back_to_the_pool(
        migrated_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = TraceSink(migrated_engine, "UTC", None, 3600.0, keep_connection=0.5)
    sink.layout()
    log = PoolLog(migrated_engine, monkeypatch)
    assert sink.write(traces("a", 3)).written == 3
    assert sink.write(traces("b", 3)).written == 3  # at once: the same connection
    assert (log.checkouts, log.checkins) == (1, 0)
    time.sleep(0.6)
    assert sink.write(traces("c", 3)).written == 3
    assert (log.checkouts, log.checkins) == (2, 1)  # given back, and one checked out (pinged)
    sink.release_connection()


@pytest.mark.mariadb
def test_a_kept_connection_the_server_closed_is_not_sent_a_batch(
        mariadb_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # MariaDB closes a connection idle past wait_timeout, or on KILL: the next batch goes on a
    # new connection, where sending it on the closed one would fail it (an outage to the
    # caller, its fate unknown once the write was sent).
    engine = create_engine(mariadb_url)
    try:
        migrate.upgrade(engine)
        sink = TraceSink(engine, "UTC", None, 3600.0, keep_connection=60.0)
        assert sink.write(traces("before", 3)).written == 3
        assert sink._kept is not None
        thread_id = sink._kept.connection.dbapi_connection.thread_id()  # type: ignore[union-attr]
        with engine.connect() as admin:
            admin.exec_driver_sql(f"KILL CONNECTION {int(thread_id)}")
        deadline = time.monotonic() + 10
        while not sink_module._closed_by_server(sink._kept) and time.monotonic() < deadline:
            time.sleep(0.01)  # the server closes the socket
        with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
            result = sink.write(traces("after", 3))
        assert not caplog.records  # dropped, not rolled back on a closed socket
        assert (result.written, result.unavailable, result.dropped) == (3, False, {})
        assert sorted(t.event_key for t in read_traces(engine)) == \
            [f"after.{i}" for i in range(3)] + [f"before.{i}" for i in range(3)]
        sink.release_connection()
    finally:
        engine.dispose()
