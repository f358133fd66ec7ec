"""``GET /api/telemetry/traces[/<id>]``: stored traces for operators, newest first.

Every route needs an API key with the ``traces:read`` scope (``flask keys create --scope
traces:read``; ``admin`` carries it), sent as ``Authorization: Bearer <key>``.

* ``GET /api/telemetry/traces?request_id=&event_key=&actor_id=&since=&until=&limit=&before_id=``:
  ``{"items": [...], "next_before_id": N|null}``; the next page is the same query with
  ``before_id=N`` (``trace_service.lookup`` says what each filter means);
* ``GET /api/telemetry/traces/<id>``: one trace, the same object as an item.

The POST on the same path is ingest's (``trace_service.http.ingest``): Flask routes by method,
and this blueprint's key check runs only for its own GETs. Answers: 200; 400 naming the
parameter, its value and what to give; 401/403/429 as for ``/reports``; 404 for an unknown id;
503 when the database cannot answer (nothing a client sends produces a 500).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from governance.errors import LayoutError, TraceInputError
from trace_service.http.ingest import app_engine, refuse, require_key
from trace_service.lookup import (
    FIELDS,
    TraceQuery,
    find_traces,
    get_trace,
    parse_field,
    parse_trace_id,
    trace_dict,
)

traces_view = Blueprint("traces", __name__)
logger = logging.getLogger("trace_service.http.traces_view")
SCOPE = "traces:read"
_SHOWN = 80  # characters of a refused value quoted back in the error


traces_view.before_request(require_key(SCOPE))


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= _SHOWN else raw[:_SHOWN] + "...")


@traces_view.get("/api/telemetry/traces")
def list_traces() -> Any:
    """One page of traces matching the query's filters, newest first."""
    values: dict[str, Any] = {}
    for name in request.args:
        if name not in FIELDS:
            # A misspelt filter must not quietly list every trace.
            return refuse(400, f"{name}={_shown(request.args[name])} is not a parameter of this "
                               f"lookup: use {', '.join(FIELDS)}")
        given = request.args.getlist(name)
        if len(given) > 1:
            return refuse(400, f"{name} is given {len(given)} times: give it once")
        try:
            values[name] = parse_field(name, given[0])
        except TraceInputError as exc:
            return refuse(400, f"{name}={_shown(given[0])} {exc}")
    return _answer(lambda engine: find_traces(engine, TraceQuery(**values)).as_dict())


@traces_view.get("/api/telemetry/traces/<trace_id>")
def show_trace(trace_id: str) -> Any:
    """One trace by id."""
    try:
        wanted = parse_trace_id(trace_id, "an id that GET /api/telemetry/traces lists")
    except TraceInputError as exc:
        return refuse(400, f"id={_shown(trace_id)} {exc}")

    def one(engine: Engine) -> dict[str, Any] | None:
        trace = get_trace(engine, wanted)
        return None if trace is None else trace_dict(trace)

    return _answer(one, missing=f"no trace {wanted}: GET /api/telemetry/traces lists them")


def _answer(read: Callable[[Engine], dict[str, Any] | None], missing: str = "") -> Any:
    """``read``'s result as JSON; 404 for None; 503 when the database cannot answer."""
    try:
        body = read(app_engine())
    except LayoutError as exc:
        return refuse(503, str(exc), 30.0)
    except SQLAlchemyError as exc:
        # The type only: enough to alert on, and nothing of the lookup in the log.
        logger.warning("trace lookup failed: %s", type(exc).__name__)
        return refuse(503, "the trace database did not answer in time: retry after the "
                           "Retry-After delay, or narrow the lookup (request_id, since)", 5.0)
    if body is None:
        return refuse(404, missing)
    return jsonify(body)
