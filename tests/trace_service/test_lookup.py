"""Trace lookup (trace_service/lookup.py): filters, globs, newest-first keyset pages, on MariaDB
and SQLite, in layouts A (ours), B and B0 (PHP's).

Rows are stored at times derived from one base time, and the filters are derived from the same
base: no test reads the clock.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from governance.errors import TraceInputError
from tests.support.php_schema import create_php_table
from trace_service import migrate
from trace_service.db import create_engine, table_layout
from trace_service.layout import LAYOUT_A, LAYOUT_B, LAYOUT_B0
from trace_service.lookup import (
    MAX_ID,
    WALL_TIME_PATTERN,
    Page,
    TraceQuery,
    find_traces,
    get_trace,
    glob_to_like,
    lookup_sql,
    parse_field,
    parse_wall_time,
    trace_dict,
)

BASE = datetime(2026, 11, 16, 9, 0)  # every row's time and every time filter derive from it


@dataclass(frozen=True)
class Row:
    """What a test stores, whatever the layout's columns for it are."""

    event_key: str
    request_id: str | None = None
    actor: int | None = None
    actor_type: str = "admin"  # layout B only
    minute: int = 0  # BASE + this many minutes
    metadata: str | None = None


@dataclass
class Table:
    engine: Engine
    layout: str

    def insert(self, rows: list[Row], *, stamp: str = "%Y-%m-%d %H:%M:%S.%f") -> list[int]:
        """Store ``rows`` in order (as PHP's PDO would); return their ids."""
        layout = table_layout(self.engine)
        if layout.actor_style == "admin_id":
            actor_columns, actor_values = "actor_admin_id", ":actor"
        else:
            actor_columns, actor_values = "actor_type, actor_id", ":actor_type, :actor"
        statement = sa.text(
            f"INSERT INTO telemetry_traces (event_key, severity, {actor_columns}, request_id, "
            f"route_name, metadata, {layout.time_column}) VALUES (:event_key, 'info', {actor_values}, "
            ":request_id, 'admins.list', :metadata, :at)")
        with self.engine.begin() as conn:
            before = conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM telemetry_traces")).scalar_one()
            conn.execute(statement, [
                {"event_key": r.event_key, "actor": r.actor, "actor_type": r.actor_type,
                 "request_id": r.request_id, "metadata": r.metadata,
                 "at": (BASE + timedelta(minutes=r.minute)).strftime(stamp)} for r in rows])
            ids = list(conn.execute(sa.text("SELECT id FROM telemetry_traces WHERE id > :b ORDER BY id"),
                                    {"b": before}).scalars())
        assert len(ids) == len(rows)
        return ids


@pytest.fixture(params=["A", "B", "B0"])
def table(request: pytest.FixtureRequest, engine: Engine) -> Table:
    """An empty telemetry_traces in each layout, on each backend (``engine`` is parametrized)."""
    if request.param == "A":
        migrate.upgrade(engine)  # ours, with idx_request and the others
    else:
        create_php_table(engine, request.param)
    assert table_layout(engine).name == request.param
    return Table(engine, request.param)


def _ids(page: Page) -> list[int]:
    return [t.id for t in page.items]


def _all_pages(engine: Engine, query: TraceQuery) -> list[Page]:
    pages = [find_traces(engine, query)]
    while pages[-1].next_before_id is not None:
        assert len(pages) < 1000, "the pages do not end"
        query = replace(query, before_id=pages[-1].next_before_id)
        pages.append(find_traces(engine, query))
    return pages


# ---------------------------------------------------------------- the statement (pure)


@pytest.mark.parametrize(("glob", "like"), [
    ("http.request.*", "http.request.%"),
    ("auth.?.x", "auth._.x"),
    ("100%_done!", "100!%!_done!!"),
    ("*", "%"),
    ("a\\b[c]", "a\\b[c]"),  # only * and ? are special: backslash and brackets are themselves
])
def test_glob_to_like(glob: str, like: str) -> None:
    assert glob_to_like(glob) == like


@pytest.mark.parametrize("layout", [LAYOUT_A, LAYOUT_B, LAYOUT_B0])
def test_values_are_bound_never_written_into_the_sql(layout: Any) -> None:
    hostile = "x' OR 1=1 -- ;DROP TABLE telemetry_traces"
    query = TraceQuery(request_id=hostile, event_key=hostile + "*", actor_id=7, since=BASE,
                       until=BASE + timedelta(days=1), limit=10, before_id=99)
    sql, params = lookup_sql(layout, query)
    assert hostile not in sql and "OR 1=1" not in sql and "99" not in sql and "2026" not in sql
    assert params == {"request_id": hostile, "event_key": glob_to_like(hostile + "*"), "actor_id": 7,
                      "since": "2026-11-16 09:00:00", "until": "2026-11-17 09:00:00",
                      "before_id": 99, "limit": 11}
    assert sql.endswith("ORDER BY id DESC LIMIT :limit")
    actor = ("actor_admin_id = :actor_id" if layout.actor_style == "admin_id"
             else "actor_id = :actor_id AND actor_type = 'admin'")
    assert actor in sql and f"{layout.time_column} >= :since" in sql and "id < :before_id" in sql


def test_no_filter_lists_everything() -> None:
    sql, params = lookup_sql(LAYOUT_A, TraceQuery())
    assert "WHERE" not in sql and params == {"limit": 51}


def _reference(glob: str, key: str) -> bool:
    """What the glob means: * any run, ? one character, the rest literal, ASCII case ignored."""
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.fullmatch(pattern, key, re.IGNORECASE | re.DOTALL) is not None


# No 'u' beside 'ü': MySQL's collations also equate accented letters with plain ones.
_ALPHABET = st.sampled_from(list("aAbB.%_!*?\\[]-/ü "))


@settings(max_examples=300, deadline=None)
@given(glob=st.text(_ALPHABET, min_size=1, max_size=8), key=st.text(_ALPHABET, max_size=8))
def test_glob_matches_on_sqlite_as_it_reads(glob: str, key: str) -> None:
    with sqlite3.connect(":memory:") as conn:
        (matched,) = conn.execute("SELECT ? LIKE ? ESCAPE '!'", (key, glob_to_like(glob))).fetchone()
    assert bool(matched) == _reference(glob, key)


@settings(max_examples=150, deadline=None)
@given(glob=st.text(_ALPHABET, min_size=1, max_size=8), key=st.text(_ALPHABET, max_size=8))
def test_glob_matches_on_mariadb_as_it_reads(mariadb_server: Engine, glob: str, key: str) -> None:
    with mariadb_server.connect() as conn:
        matched = conn.execute(sa.text("SELECT :key LIKE :pattern ESCAPE '!'"),
                               {"key": key, "pattern": glob_to_like(glob)}).scalar_one()
    assert bool(matched) == _reference(glob, key)


# ---------------------------------------------------------------- parsing the edges' text


@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-11-16", datetime(2026, 11, 16)),
    ("2026-11-16T09:30", datetime(2026, 11, 16, 9, 30)),
    ("2026-11-16T09:30:15", datetime(2026, 11, 16, 9, 30, 15)),
    ("2026-11-16 09:30:15.25", datetime(2026, 11, 16, 9, 30, 15, 250_000)),
    ("2028-02-29", datetime(2028, 2, 29)),
    ("2000-02-29T00:00", datetime(2000, 2, 29)),
])
def test_wall_times_accepted(raw: str, expected: datetime) -> None:
    assert parse_wall_time(raw) == expected


@pytest.mark.parametrize(("raw", "words"), [
    ("2026-02-29", "is not a date or time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]"),
    ("1900-02-29", "is not a date or time"),
    ("2026-11-31", "is not a date or time"),
    ("16/11/2026", "is not a date or time"),
    ("2026-11-16T24:00", "is not a date or time"),
    ("2026-11-16\n", "is not a date or time"),
    ("0999-01-01", "is not a date or time"),
    ("2026-11-16T09:30Z", "has a zone"),
    ("2026-11-16T09:30:00+02:00", "has a zone"),
])
def test_wall_times_refused_with_the_fix(raw: str, words: str) -> None:
    with pytest.raises(TraceInputError, match=re.escape(words)) as refused:
        parse_wall_time(raw)
    assert "TRACE_TABLE_TIMEZONE" in str(refused.value)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(WALL_TIME_PATTERN, fullmatch=True))
def test_every_time_the_document_admits_is_accepted(raw: str) -> None:
    # The OpenAPI document serves this pattern: a value it admits must never get a 400.
    parse_wall_time(raw)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
       st.sampled_from(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"]))
def test_every_real_time_is_admitted_by_the_pattern(moment: datetime, form: str) -> None:
    raw = moment.strftime(form)
    assert re.fullmatch(WALL_TIME_PATTERN.strip("^$"), raw)
    parsed = parse_wall_time(raw)
    assert parsed == datetime.strptime(raw, form)


@pytest.mark.parametrize(("name", "raw", "words"), [
    ("limit", "0", "is not a page size: use a whole number from 1 to 1000 (default 50)"),
    ("limit", "1001", "from 1 to 1000"),
    ("limit", "²", "from 1 to 1000"),  # str.isdigit() says yes; int() would raise
    ("limit", "5.0", "from 1 to 1000"),
    ("actor_id", "-1", "is not an actor id: use the admin's id"),
    ("before_id", str(MAX_ID + 1), "is not a trace id: use the next_before_id of the page before"),
    ("before_id", "0", "is not a trace id"),
    ("request_id", "", "is empty: give a value, or leave the filter out"),
    ("event_key", "x" * 256, "is longer than 255 characters"),
])
def test_bad_text_is_refused_with_the_fix(name: str, raw: str, words: str) -> None:
    with pytest.raises(TraceInputError, match=re.escape(words)):
        parse_field(name, raw)


def test_fields_parse_to_their_types() -> None:
    assert parse_field("limit", "007") == 7
    assert parse_field("before_id", str(MAX_ID)) == MAX_ID
    assert parse_field("actor_id", "0") == 0
    assert parse_field("event_key", "a%b*") == "a%b*"


@pytest.mark.parametrize("bad", [
    {"limit": 0}, {"limit": 1001}, {"limit": True}, {"before_id": 0}, {"actor_id": -1},
    {"request_id": ""}, {"since": BASE.replace(tzinfo=UTC)},
])
def test_a_query_refuses_values_out_of_range(bad: dict[str, Any]) -> None:
    with pytest.raises(TraceInputError):
        TraceQuery(**bad)


# ---------------------------------------------------------------- on the databases


def test_newest_first_and_every_column_mapped(table: Table) -> None:
    ids = table.insert([Row("auth.login", "req-1", actor=7, minute=i, metadata='{"n":1}')
                        for i in range(3)])
    page = find_traces(table.engine, TraceQuery())
    assert _ids(page) == ids[::-1] and page.next_before_id is None
    newest = page.items[0]
    assert (newest.event_key, newest.request_id, newest.actor_admin_id, newest.route_name) == (
        "auth.login", "req-1", 7, "admins.list")
    assert newest.actor_type == ("admin" if table.layout == "B" else None)
    assert newest.occurred_at.startswith("2026-11-16 09:02:00")
    assert trace_dict(newest)["metadata"] == {"n": 1}
    assert trace_dict(newest)["metadata_text"] == '{"n":1}'


def test_each_filter(table: Table) -> None:
    ids = table.insert([
        Row("http.request.start", "req-a", actor=1, minute=0),
        Row("http.request.end", "req-a", actor=1, minute=10),
        Row("auth.login", "req-b", actor=2, minute=20),
        Row("http.requests", "req-b", actor=None, minute=30),
        Row("http.request.start", "req-c", actor=1, minute=40),
    ])

    def found(**filters: Any) -> list[int]:
        return _ids(find_traces(table.engine, TraceQuery(**filters)))

    assert found(request_id="req-a") == [ids[1], ids[0]]
    assert found(event_key="http.request.*") == [ids[4], ids[1], ids[0]]
    assert found(event_key="http.request?") == [ids[3]]
    assert found(event_key="HTTP.REQUEST.START") == [ids[4], ids[0]]  # the collation's case rule
    assert found(event_key="auth.login") == [ids[2]]
    assert found(actor_id=1) == [ids[4], ids[1], ids[0]]
    assert found(actor_id=3) == []
    assert found(since=BASE + timedelta(minutes=10)) == [ids[4], ids[3], ids[2], ids[1]]
    assert found(until=BASE + timedelta(minutes=10)) == [ids[0]]  # until is not included
    assert found(since=BASE + timedelta(minutes=10), until=BASE + timedelta(minutes=30)) == [ids[2], ids[1]]
    assert found(event_key="http.*", actor_id=1, request_id="req-c") == [ids[4]]
    assert found(before_id=ids[2]) == [ids[1], ids[0]]


def test_a_literal_percent_underscore_or_bang_matches_only_itself(table: Table) -> None:
    keys = ["a%b", "a_b", "a!b", "axb", "a%%b", "ab"]
    by_key = dict(zip(keys, table.insert([Row(k) for k in keys]), strict=True))

    def found(glob: str) -> set[str]:
        page = find_traces(table.engine, TraceQuery(event_key=glob))
        return {t.event_key for t in page.items}

    assert found("a%b") == {"a%b"}
    assert found("a_b") == {"a_b"}
    assert found("a!b") == {"a!b"}
    assert found("a?b") == {"a%b", "a_b", "a!b", "axb"}
    assert found("a*b") == set(by_key)
    assert found("a%*") == {"a%b", "a%%b"}


def test_actor_on_layout_b_is_an_admin_only(table: Table) -> None:
    admin, user = table.insert([Row("x", actor=5, actor_type="admin"), Row("x", actor=5, actor_type="user")])
    found = _ids(find_traces(table.engine, TraceQuery(actor_id=5)))
    # Layouts A and B0 have no actor_type: both rows are actor 5's (the fixture stores no type).
    assert found == ([admin] if table.layout == "B" else [user, admin])


def test_keyset_pages_return_every_row_once(table: Table) -> None:
    ids = table.insert([Row(f"k.{i % 4}", f"req-{i % 3}", minute=i) for i in range(23)])
    for query, expected in [
        (TraceQuery(limit=5), ids),
        (TraceQuery(limit=1), ids),
        (TraceQuery(limit=23), ids),
        (TraceQuery(limit=4, event_key="k.1"), ids[1::4]),
        (TraceQuery(limit=2, request_id="req-2"), ids[2::3]),
    ]:
        pages = _all_pages(table.engine, query)
        seen = [i for page in pages for i in _ids(page)]
        assert seen == sorted(expected, reverse=True)  # newest first, each once, none skipped
        assert all(0 < len(page.items) <= query.limit for page in pages)
        assert len(pages) == -(-len(expected) // query.limit)  # no empty last page


def test_rows_arriving_between_pages_do_not_shift_them(table: Table) -> None:
    ids = table.insert([Row("k", minute=i) for i in range(6)])
    first = find_traces(table.engine, TraceQuery(limit=3))
    table.insert([Row("k", minute=60 + i) for i in range(4)])
    second = find_traces(table.engine, TraceQuery(limit=3, before_id=first.next_before_id))
    assert _ids(first) + _ids(second) == ids[::-1]
    assert second.next_before_id is None


def test_one_request_among_many_rows_is_one_page(table: Table) -> None:
    target = "3f2b8c4e-9d1a-4b7e-8c2f-1a2b3c4d5e6f"
    rows = [Row("http.request.start", target if i % 97 == 13 else f"other-{i % 211}", minute=i % 600)
            for i in range(3000)]
    ids = table.insert(rows)
    wanted = [i for i, row in zip(ids, rows, strict=True) if row.request_id == target]
    assert len(wanted) == 31
    page = find_traces(table.engine, TraceQuery(request_id=target, limit=50))
    assert _ids(page) == wanted[::-1] and page.next_before_id is None


@pytest.mark.parametrize(("backend", "layout"), [("sqlite", "A"), ("mariadb", "A"), ("mariadb", "B")])
def test_request_id_lookups_use_idx_request(request: pytest.FixtureRequest, backend: str,
                                            layout: str) -> None:
    """Not a scan: the request-id lookup, first page and later ones, reads idx_request (which
    ours and PHP's layout B have; PHP's B0 DDL has no index but the primary key)."""
    engine = create_engine(request.getfixturevalue(f"{backend}_url"))
    if layout == "A":
        migrate.upgrade(engine)
    else:
        create_php_table(engine, layout)
    Table(engine, layout).insert([Row("k", f"req-{i % 50}") for i in range(500)])
    for query in (TraceQuery(request_id="req-7"), TraceQuery(request_id="req-7", before_id=300)):
        sql, params = lookup_sql(table_layout(engine), query)
        with engine.connect() as conn:
            if backend == "sqlite":
                plan = " ".join(str(r[-1]) for r in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}"),
                                                                 params))
                assert "USING INDEX idx_request" in plan and "TEMP B-TREE" not in plan, plan
            else:
                rows = conn.execute(sa.text(f"EXPLAIN {sql}"), params).mappings().all()
                assert [r["key"] for r in rows] == ["idx_request"], rows
                assert "filesort" not in (rows[0]["Extra"] or ""), rows
    engine.dispose()


def test_seconds_without_a_fraction_are_inside_the_window(table: Table) -> None:
    # PHP may store '2026-11-16 09:05:00' (no fraction); SQLite compares that text.
    (exact,) = table.insert([Row("k", minute=5)], stamp="%Y-%m-%d %H:%M:%S")
    assert _ids(find_traces(table.engine, TraceQuery(since=BASE + timedelta(minutes=5)))) == [exact]
    assert _ids(find_traces(table.engine, TraceQuery(until=BASE + timedelta(minutes=5)))) == []


def test_get_trace(table: Table) -> None:
    (stored,) = table.insert([Row("auth.login", "req-1", actor=3)])
    trace = get_trace(table.engine, stored)
    assert trace is not None and trace == find_traces(table.engine, TraceQuery()).items[0]
    assert get_trace(table.engine, stored + 1) is None
    assert get_trace(table.engine, MAX_ID + 1) is None and get_trace(table.engine, 0) is None


@pytest.fixture
def sqlite_a(sqlite_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlite_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def test_metadata_that_is_not_json_is_shown_as_stored(sqlite_a: Engine) -> None:
    (stored,) = Table(sqlite_a, "A").insert([Row("k", metadata="not json {")])
    trace = get_trace(sqlite_a, stored)
    assert trace is not None
    assert trace_dict(trace)["metadata"] is None and trace_dict(trace)["metadata_text"] == "not json {"
