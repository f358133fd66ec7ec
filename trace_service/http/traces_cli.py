"""``flask traces list|show``: stored traces for operators, newest first, any table layout.

* ``flask traces list [--request-id ID] [--event-key GLOB] [--actor-id N] [--since T]
  [--until T] [--limit N] [--before-id N] [--format table|json]``
* ``flask traces show ID [--format table|json]``

Times are ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM[:SS]`` on the table's wall clock
(``TRACE_TABLE_TIMEZONE``), ``--since`` included and ``--until`` not. A page ends with the
``--before-id`` of the next one. Metadata is shown as stored (masked when it was written).
The same lookup as ``GET /api/telemetry/traces`` (``trace_service.lookup``), on the app's engine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from governance.errors import LayoutError, TraceInputError
from trace_service.lookup import (
    DEFAULT_LIMIT,
    Page,
    TraceQuery,
    find_traces,
    get_trace,
    parse_field,
    parse_trace_id,
    trace_dict,
)
from trace_service.reader import StoredTrace

traces_cli = AppGroup("traces", help="Look up stored traces, newest first.")
_FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                       show_default=True)
# C0 and C1 controls (ESC starts a terminal escape sequence): stored text comes from clients.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
T = TypeVar("T")


def _engine() -> Engine:
    engine: Engine = current_app.extensions["trace_engine"]
    return engine


def _parsed(name: str) -> Callable[[click.Context, click.Parameter, str | None], Any]:
    """An option callback: the option's text parsed as lookup filter ``name``."""

    def parse(_ctx: click.Context, param: click.Parameter, raw: str | None) -> Any:
        if raw is None:
            return None
        try:
            return parse_field(name, raw)
        except TraceInputError as exc:
            raise click.BadParameter(f"{raw!r} {exc}", param=param) from None

    return parse


def _read(read: Callable[[Engine], T]) -> T:
    """``read`` on the app's engine; a database that cannot answer is a one-line error."""
    try:
        return read(_engine())
    except LayoutError as exc:
        raise click.ClickException(str(exc)) from None
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise click.ClickException(
            f"the lookup failed ({type(cause).__name__}: {str(cause).splitlines()[0][:200]}): check "
            "that the database is up and TRACE_DATABASE_URL, or narrow the filters "
            "(--request-id, --since)") from None


@traces_cli.command("list")
@click.option("--request-id", callback=_parsed("request_id"), metavar="ID",
              help="Only this request's traces.")
@click.option("--event-key", callback=_parsed("event_key"), metavar="GLOB",
              help="Event keys matching this glob: * any run of characters, ? one (e.g. 'auth.*').")
@click.option("--actor-id", callback=_parsed("actor_id"), metavar="N",
              help="Only traces whose actor is this admin.")
@click.option("--since", callback=_parsed("since"), metavar="TIME",
              help="From this time on, included: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], the "
                   "table's wall clock.")
@click.option("--until", callback=_parsed("until"), metavar="TIME",
              help="Before this time, not included (same forms).")
@click.option("--limit", callback=_parsed("limit"), metavar="N",
              help=f"Traces per page, 1 to 1000 [default: {DEFAULT_LIMIT}].")
@click.option("--before-id", callback=_parsed("before_id"), metavar="N",
              help="The page after another: the id its last line names.")
@_FORMAT
def list_traces(request_id: str | None, event_key: str | None, actor_id: int | None,
                since: datetime | None, until: datetime | None, limit: int | None,
                before_id: int | None, fmt: str) -> None:
    """List traces matching every filter given, newest first, a page at a time."""
    if since is not None and until is not None and until <= since:
        raise click.BadParameter(f"{until:%Y-%m-%d %H:%M:%S} is not after --since "
                                 f"{since:%Y-%m-%d %H:%M:%S}: swap them", param_hint="--until")
    query = TraceQuery(request_id=request_id, event_key=event_key, actor_id=actor_id, since=since,
                       until=until, limit=DEFAULT_LIMIT if limit is None else limit,
                       before_id=before_id)
    page = _read(lambda engine: find_traces(engine, query))
    if fmt == "json":
        click.echo(json.dumps(page.as_dict(), ensure_ascii=False))
    else:
        _print_page(page)


@traces_cli.command("show")
@click.argument("trace_id", metavar="ID")
@_FORMAT
def show(trace_id: str, fmt: str) -> None:
    """Show trace ID, every column (see `flask traces list`)."""
    try:
        wanted = parse_trace_id(trace_id, "an id that `flask traces list` shows")
    except TraceInputError as exc:
        raise click.BadParameter(f"{trace_id!r} {exc}", param_hint="ID") from None
    trace = _read(lambda engine: get_trace(engine, wanted))
    if trace is None:
        raise click.ClickException(f"no trace with id {wanted}: `flask traces list` shows the ids")
    if fmt == "json":
        click.echo(json.dumps(trace_dict(trace), ensure_ascii=False))
        return
    for name, value in trace_dict(trace).items():
        if name != "metadata":  # metadata_text is the same, as stored
            click.echo(f"{name + ':':16}{_cell(value)}")


def _cell(value: object) -> str:
    """A value for a terminal: '-' for none, control characters shown as escapes."""
    if value is None:
        return "-"
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def _actor(trace: StoredTrace) -> str:
    if trace.actor_type is not None:  # layout B: admin:7, system, user:12
        actor_id = trace.actor_admin_id
        return trace.actor_type if actor_id is None else f"{trace.actor_type}:{actor_id}"
    return "-" if trace.actor_admin_id is None else str(trace.actor_admin_id)


def _print_page(page: Page) -> None:
    """One line per trace under a header, then how to ask for the next page."""
    if not page.items:
        click.echo("no traces match")
        return
    header = ("id", "time", "severity", "event_key", "actor", "request_id", "route")
    rows = [tuple(_cell(v) for v in (t.id, t.occurred_at, t.severity, t.event_key, _actor(t),
                                     t.request_id, t.route_name)) for t in page.items]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        cells = [row[0].rjust(widths[0])] + [c.ljust(w) for c, w in zip(row[1:-1], widths[1:], strict=True)]
        click.echo("  ".join([*cells, row[-1]]))
    if page.next_before_id is not None:
        click.echo(f"more: the next page is the same command with --before-id {page.next_before_id}")
    else:
        click.echo(f"{len(page.items)} trace(s), no more")
