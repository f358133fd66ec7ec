"""`flask traces list|show` through Flask's CliRunner, on MariaDB and SQLite, layouts A and B."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from click.testing import Result
from flask import Flask

from tests.trace_service.http.test_ingest import make_ingest_on_layout
from tests.trace_service.test_lookup import BASE, Row, Table
from trace_service.http.traces_cli import traces_cli
from trace_service.lookup import TraceQuery, find_traces


@pytest.fixture(params=["A", "B"])
def app_table(request: pytest.FixtureRequest, database_url: str) -> Iterator[tuple[Flask, Table]]:
    made = make_ingest_on_layout(database_url, request.param)
    yield made.app, Table(made.app.extensions["trace_engine"], request.param)
    made.app.extensions["trace_writer"].close(2)
    made.app.extensions["trace_engine"].dispose()


def _run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(traces_cli, list(args))


def test_list_pages_as_a_table_then_the_next_before_id(app_table: tuple[Flask, Table]) -> None:
    app, table = app_table
    ids = table.insert([Row("auth.login", f"req-{i % 2}", actor=7, minute=i) for i in range(5)])
    first = _run(app, "list", "--limit", "3")
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    assert lines[0].split() == ["id", "time", "severity", "event_key", "actor", "request_id", "route"]
    actor = "admin:7" if table.layout == "B" else "7"
    assert lines[1].split() == [str(ids[4]), "2026-11-16", "09:04:00.000000", "info", "auth.login", actor,
                                "req-0", "admins.list"]
    assert [int(line.split()[0]) for line in lines[1:4]] == ids[:1:-1]
    assert lines[4] == f"more: the next page is the same command with --before-id {ids[2]}"
    second = _run(app, "list", "--limit", "3", "--before-id", str(ids[2]))
    assert [int(line.split()[0]) for line in second.output.splitlines()[1:3]] == [ids[1], ids[0]]
    assert second.output.splitlines()[-1] == "2 trace(s), no more"


def test_list_json_is_the_lookup_page(app_table: tuple[Flask, Table]) -> None:
    app, table = app_table
    ids = table.insert([Row("http.request.start", "req-1", actor=3, minute=0, metadata='{"n":1}'),
                        Row("http.request.end", "req-1", actor=3, minute=1),
                        Row("auth.login", "req-2", actor=4, minute=2)])
    result = _run(app, "list", "--event-key", "http.request.*", "--actor-id", "3", "--request-id", "req-1",
                  "--since", f"{BASE:%Y-%m-%d}", "--until", f"{BASE + timedelta(minutes=1):%Y-%m-%dT%H:%M}",
                  "--limit", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert [i["id"] for i in body["items"]] == [ids[0]] and body["next_before_id"] is None
    assert body["items"][0]["metadata"] == {"n": 1}
    expected = find_traces(table.engine, TraceQuery(
        event_key="http.request.*", actor_id=3, request_id="req-1", until=BASE + timedelta(minutes=1),
        limit=1))
    assert body == json.loads(json.dumps(expected.as_dict()))
    two = json.loads(_run(app, "list", "--format", "json", "--limit", "2").output)
    assert two["next_before_id"] == ids[1]


def test_show_one_trace(app_table: tuple[Flask, Table]) -> None:
    app, table = app_table
    (stored,) = table.insert([Row("auth.login", "req-1", actor=7, metadata='{"password":"[masked]"}')])
    shown = _run(app, "show", str(stored))
    assert shown.exit_code == 0, shown.output
    assert f"id:             {stored}" in shown.output
    assert 'metadata_text:  {"password":"[masked]"}' in shown.output
    as_json = json.loads(_run(app, "show", str(stored), "--format", "json").output)
    assert as_json["id"] == stored and as_json["metadata"] == {"password": "[masked]"}


def test_the_group_is_the_apps_traces_command(app_table: tuple[Flask, Table]) -> None:
    app, table = app_table
    table.insert([Row("k")])
    result = app.test_cli_runner().invoke(args=["traces", "list", "--format", "json"])  # the entry point
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["items"]) == 1


def test_stored_control_characters_are_shown_escaped(app_table: tuple[Flask, Table]) -> None:
    app, table = app_table
    table.insert([Row("evil\x1b[2J\nkey", "req\r1")])
    output = _run(app, "list").output
    assert "\x1b" not in output and "evil\\x1b[2J\\x0akey" in output and "req\\x0d1" in output
    assert len(output.splitlines()) == 3  # header, the trace, the end line


@pytest.mark.parametrize(("args", "words"), [
    (["list", "--limit", "0"], "Invalid value for '--limit': '0' is not a page size: use a whole number "
                               "from 1 to 1000"),
    (["list", "--limit", "1001"], "'--limit': '1001' is not a page size"),
    (["list", "--since", "2026-02-30"], "'--since': '2026-02-30' is not a date or time: use YYYY-MM-DD or "
                                         "YYYY-MM-DDTHH:MM[:SS]"),
    (["list", "--until", "yesterday"], "'--until': 'yesterday' is not a date or time"),
    (["list", "--since", "2026-11-16T09:00Z"], "'--since': '2026-11-16T09:00Z' has a zone"),
    (["list", "--since", "2026-11-17", "--until", "2026-11-16"], "is not after --since 2026-11-17 "
                                                                 "00:00:00: swap them"),
    (["list", "--actor-id", "x"], "'--actor-id': 'x' is not an actor id"),
    (["list", "--before-id", "0"], "'--before-id': '0' is not a trace id: use the next_before_id"),
    (["list", "--request-id", ""], "'--request-id': '' is empty"),
    (["list", "--format", "csv"], "'--format'"),
    (["show", "abc"], "'abc' is not a trace id: use an id that `flask traces list` shows"),
])
def test_bad_input_is_a_usage_error_naming_the_option(app_table: tuple[Flask, Table], args: list[str],
                                                      words: str) -> None:
    app, _ = app_table
    result = _run(app, *args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # click's error, not a traceback
    assert words in result.output, result.output


def test_an_unknown_id_is_an_error(app_table: tuple[Flask, Table]) -> None:
    app, _ = app_table
    result = _run(app, "show", "12345")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "no trace with id 12345: `flask traces list` shows the ids" in result.output


def test_a_database_that_cannot_answer_is_one_line(app_table: tuple[Flask, Table]) -> None:
    app, table = app_table
    table.insert([Row("k")])
    assert _run(app, "list").exit_code == 0
    with table.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE telemetry_traces"))
    result = _run(app, "list", "--request-id", "x")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Error: the lookup failed (" in result.output and "Traceback" not in result.output
    assert "narrow the filters" in result.output
