"""Trace lookup for operators: filters in, a newest-first keyset page of stored traces out.

``flask traces list|show`` and ``GET /api/telemetry/traces[/<id>]`` both go through here:

* :class:`TraceQuery` holds the filters (request id, event-key glob, actor id, a wall-clock
  ``[since, until)`` window), the page size and the keyset cursor ``before_id``;
* :func:`parse_field` turns one filter's text (a command-line option, a query parameter) into
  its value, or raises :class:`~governance.errors.TraceInputError` saying what to give instead;
* :func:`lookup_sql` builds the statement for a layout (pure: every value is a bound
  parameter, none is ever written into the SQL text);
* :func:`find_traces` and :func:`get_trace` run it (the I/O edge), through the reader's one
  column mapping, so rows of layout A, B and B0 come back alike as
  :class:`~trace_service.reader.StoredTrace`.

Pages are newest first (``ORDER BY id DESC``) and keyset-paginated (``id < :before_id``), so
the hundredth page costs what the first does, and a page never repeats or skips a row when new
rows arrive meanwhile (new rows have higher ids). The request-id lookup is one range of the
table's ``idx_request`` index (``request_id``, then the primary key, which InnoDB and SQLite
keep in every secondary index), read backwards from ``before_id``. Other filters are left to the
optimizer; for a time window deep in the past, MariaDB may walk the primary key down through
every newer row (``bench/lookup.py`` measures it), so a request id or an actor is the fast way in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.errors import TraceInputError
from trace_service.db import table_layout
from trace_service.layout import TABLE_NAME, Layout
from trace_service.reader import StoredTrace, select_list, to_trace

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_ID = 2**63 - 1  # BIGINT: no larger id can exist, and SQLite's driver overflows past it
MAX_TEXT = 255  # event_key's column width; no stored request id is longer either
FIELDS = ("request_id", "event_key", "actor_id", "since", "until", "limit", "before_id")

# LIKE's escape character. Not the backslash: MySQL string literals give the backslash a
# meaning of their own, SQLite's do not, and '!' means the same on both.
LIKE_ESCAPE = "!"

# Wall-clock times as the filters accept them, and exactly those: the OpenAPI document serves
# WALL_TIME_PATTERN, so the answer (200 or 400) follows from the document alone. Years 1000 to
# 9999 (MySQL's DATETIME range), real calendar dates only (29 February in leap years).
_YEAR = "[1-9][0-9]{3}"
_LEAP_YEAR = "(?:[1-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)"
_MONTH_DAY = ("(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
              "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
              "|02-(?:0[1-9]|1[0-9]|2[0-8]))")
_DATE = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]{1,6})?)?"
_WALL = f"{_DATE}(?:[T ]{_TIME})?"
WALL_TIME_PATTERN = f"^{_WALL}$"
_WALL_RE = re.compile(_WALL)
_ZONED_RE = re.compile(f"{_DATE}[T ]{_TIME}(?:Z|[+-][0-9]{{2}}:?[0-9]{{2}})", re.IGNORECASE)
_DIGITS_RE = re.compile("[0-9]{1,19}")
WALL_TIME_FORMS = "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]"


@dataclass(frozen=True)
class TraceQuery:
    """What to look up. Every filter given must match (AND); none given lists every trace.

    ``event_key`` is a glob: ``*`` any run of characters, ``?`` one character, anything else
    itself (``%``, ``_`` and ``!`` included). ``since``/``until`` are naive times on the
    table's wall clock (``TRACE_TABLE_TIMEZONE``), ``since`` included and ``until`` not.
    ``before_id`` is the previous page's :attr:`Page.next_before_id`. Matching follows the
    table's collation: ``utf8mb4_unicode_ci`` on MySQL and SQLite's ``LIKE`` both ignore ASCII
    case in the glob.
    """

    request_id: str | None = None
    event_key: str | None = None
    actor_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    before_id: int | None = None

    def __post_init__(self) -> None:
        # The edges parse text with parse_field; this catches library callers' mistakes.
        for name in ("request_id", "event_key"):
            value = getattr(self, name)
            if value is not None:
                _check_text(value)
        for name, low, high in (("limit", 1, MAX_LIMIT), ("actor_id", 0, MAX_ID),
                                ("before_id", 1, MAX_ID)):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or not low <= value <= high):
                raise TraceInputError(f"{name}={value!r} is not a whole number from {low} to {high}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is not None):
                raise TraceInputError(f"{name}={value!r}: give a naive datetime on the table's "
                                      "wall clock (TRACE_TABLE_TIMEZONE)")


@dataclass(frozen=True)
class Page:
    """One page of traces, newest first, and the cursor of the next (None on the last page)."""

    items: tuple[StoredTrace, ...]
    next_before_id: int | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form the CLI prints and the endpoint answers."""
        return {"items": [trace_dict(t) for t in self.items], "next_before_id": self.next_before_id}


def trace_dict(trace: StoredTrace) -> dict[str, Any]:
    """One trace as JSON: the columns, the time as wall-clock text, and the metadata as stored
    (``metadata_text``, masked when it was written) and parsed (``metadata``; null when the
    column is NULL or holds text that is not JSON, which only a foreign writer could store)."""
    return {
        "id": trace.id, "occurred_at": trace.occurred_at, "severity": trace.severity,
        "event_key": trace.event_key, "actor_admin_id": trace.actor_admin_id,
        "actor_type": trace.actor_type, "request_id": trace.request_id,
        "route_name": trace.route_name, "ip_address": trace.ip_address,
        "user_agent": trace.user_agent, "metadata": _parsed(trace.metadata_text),
        "metadata_text": trace.metadata_text,
    }


def _parsed(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


# ---------------------------------------------------------------- parsing the edges' text


def parse_field(name: str, raw: str) -> Any:
    """The value of filter ``name`` (one of :data:`FIELDS`) given as text.

    Raises :class:`TraceInputError` whose message says what is wrong and what to give instead,
    without the name or the value: the caller adds them in its own spelling (``--limit '0'``
    on the command line, ``limit='0'`` over HTTP).
    """
    if name in ("request_id", "event_key"):
        _check_text(raw)
        return raw
    if name in ("since", "until"):
        return parse_wall_time(raw)
    if name == "limit":
        return _parse_int(raw, 1, MAX_LIMIT, "a page size",
                          f"a whole number from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})")
    if name == "actor_id":
        return _parse_int(raw, 0, MAX_ID, "an actor id", "the admin's id, a whole number")
    if name == "before_id":
        return parse_trace_id(raw, "the next_before_id of the page before")
    raise TraceInputError(f"is not a filter: use {', '.join(FIELDS)}")


def parse_trace_id(raw: str, hint: str = "an id that a listing shows") -> int:
    """A trace id (1 to 2**63-1) given as text; :class:`TraceInputError` (suggesting ``hint``)
    otherwise."""
    return _parse_int(raw, 1, MAX_ID, "a trace id", f"{hint} (a whole number)")


def parse_wall_time(raw: str) -> datetime:
    """``YYYY-MM-DD`` (midnight) or ``YYYY-MM-DDTHH:MM[:SS[.ffffff]]`` (a space for the ``T``
    too) as a naive datetime on the table's wall clock."""
    if _WALL_RE.fullmatch(raw) is None:
        if _ZONED_RE.fullmatch(raw.strip()):
            raise TraceInputError(
                "has a zone: times here are the table's wall clock (TRACE_TABLE_TIMEZONE); "
                f"give it in that zone without an offset, as {WALL_TIME_FORMS}")
        raise TraceInputError(f"is not a date or time: use {WALL_TIME_FORMS} on the table's "
                              "wall clock (TRACE_TABLE_TIMEZONE), e.g. 2026-12-03T09:30")
    return datetime.fromisoformat(raw)


def _parse_int(raw: str, low: int, high: int, what: str, hint: str) -> int:
    # ASCII digits only: str.isdigit() also takes '²', which int() then refuses.
    if _DIGITS_RE.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise TraceInputError(f"is not {what}: use {hint}")
    return int(raw)


def _check_text(value: str) -> None:
    if not value:
        raise TraceInputError("is empty: give a value, or leave the filter out")
    if len(value) > MAX_TEXT:
        raise TraceInputError(f"is longer than {MAX_TEXT} characters, which no stored value is: "
                              "give the value as stored (a glob may end in *)")


# ---------------------------------------------------------------- the statement (pure)


def glob_to_like(glob: str) -> str:
    """The LIKE pattern (escaped with :data:`LIKE_ESCAPE`) that matches what ``glob`` does:
    ``*`` becomes ``%``, ``?`` becomes ``_``, and a literal ``%``, ``_`` or ``!`` is escaped."""
    out = []
    for char in glob:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char in ("%", "_", LIKE_ESCAPE):
            out.append(LIKE_ESCAPE + char)
        else:
            out.append(char)
    return "".join(out)


def wall_text(value: datetime) -> str:
    """A bound for the time column. Without a fraction when it has none: SQLite compares the
    stored text, and ``'…10:00:00'`` (as PHP may store it) sorts before ``'…10:00:00.000000'``."""
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    return text if value.microsecond == 0 else f"{text}.{value.microsecond:06d}"


def lookup_sql(layout: Layout, query: TraceQuery) -> tuple[str, dict[str, Any]]:
    """The SELECT text and its parameters for one page (``limit + 1`` rows: the extra row says
    whether a next page exists). Values are only ever parameters, never SQL text."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": query.limit + 1}
    if query.request_id is not None:
        where.append("request_id = :request_id")
        params["request_id"] = query.request_id
    if query.event_key is not None:
        where.append(f"event_key LIKE :event_key ESCAPE '{LIKE_ESCAPE}'")
        params["event_key"] = glob_to_like(query.event_key)
    if query.actor_id is not None:
        # As erasure finds a person's rows: layout B names the kind of actor beside the id.
        where.append("actor_admin_id = :actor_id" if layout.actor_style == "admin_id"
                     else "actor_id = :actor_id AND actor_type = 'admin'")
        params["actor_id"] = query.actor_id
    if query.since is not None:
        where.append(f"{layout.time_column} >= :since")
        params["since"] = wall_text(query.since)
    if query.until is not None:
        where.append(f"{layout.time_column} < :until")
        params["until"] = wall_text(query.until)
    if query.before_id is not None:
        where.append("id < :before_id")
        params["before_id"] = query.before_id
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {select_list(layout)} FROM {TABLE_NAME}{condition} ORDER BY id DESC LIMIT :limit"
    return sql, params


def page_of(rows: list[StoredTrace], limit: int) -> Page:
    """The page made of up to ``limit + 1`` rows read newest first."""
    items = tuple(rows[:limit])
    return Page(items, items[-1].id if len(rows) > limit else None)


# ---------------------------------------------------------------- the I/O edge


def find_traces(engine: Engine, query: TraceQuery) -> Page:
    """One page of the traces ``query`` matches, newest first, in any layout of the table."""
    sql, params = lookup_sql(table_layout(engine), query)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), params).all()
    return page_of([to_trace(row) for row in rows], query.limit)


def get_trace(engine: Engine, trace_id: int) -> StoredTrace | None:
    """The trace with this id, or None (an id out of BIGINT's range included)."""
    if not 1 <= trace_id <= MAX_ID:
        return None
    layout = table_layout(engine)
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT {select_list(layout)} FROM {TABLE_NAME} WHERE id = :id"),
                           {"id": trace_id}).first()
    return None if row is None else to_trace(row)
