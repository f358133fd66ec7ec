"""Rows and statements the sink builds, and what the database keeps of them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymysql.converters import escape_string
from sqlalchemy.engine import Engine

from trace_service.reader import read_traces
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
