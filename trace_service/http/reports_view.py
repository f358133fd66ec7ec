"""``/reports``: stored compliance reports for people (HTML) and machines (JSON, CSV).

Every route needs an API key with the ``reports:read`` scope (``flask keys create --scope
reports:read``), sent as ``Authorization: Bearer <key>``.

* ``GET /reports``: the newest reports (JSON for ``Accept: application/json`` or ``*/*``, an
  HTML list for browsers);
* ``GET /reports/<id>``: one report, the same way; ``/reports/<id>.json``, ``.csv`` and
  ``.html`` ask for one form. The JSON body is the stored content byte for byte, and every form
  carries ``X-Content-SHA256``, the stored hash, which ``sha256sum`` of the JSON body matches.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from governance.report_render import to_csv, to_html, to_html_list
from governance.report_store import StoredReport, get_report, list_reports
from trace_service.http.ingest import app_engine, refuse, require_key

reports_view = Blueprint("reports", __name__)
_FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}


reports_view.before_request(require_key("reports:read"))


def _wants_html() -> bool:
    # JSON unless the client prefers HTML (browsers do; curl's */* gets JSON).
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


@reports_view.get("/reports")
def index() -> Any:
    """The newest reports (``?limit=`` up to 1000, default 100)."""
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        return refuse(400, f"limit={raw!r} is invalid: use a whole number from 1 to 1000")
    stored = list_reports(app_engine(), int(raw))
    if _wants_html():
        return Response(to_html_list([r.summary() for r in stored]), mimetype="text/html")
    return jsonify(reports=[r.summary() for r in stored], request_id=g.get("request_id"))


@reports_view.get("/reports/<int:report_id>")
def show(report_id: int) -> Any:
    """One report, HTML for browsers, JSON otherwise."""
    return _render(report_id, "html" if _wants_html() else "json")


@reports_view.get("/reports/<int:report_id>.<fmt>")
def show_as(report_id: int, fmt: str) -> Any:
    """One report in the named form: json, csv or html."""
    if fmt not in _FORMATS:
        return refuse(404, f"no form {fmt!r} of a report: use .json, .csv or .html")
    return _render(report_id, fmt)


MAX_ID = 2**63 - 1  # BIGINT: a larger id cannot exist, and SQLite's driver overflows on it


def _render(report_id: int, fmt: str) -> Any:
    stored = get_report(app_engine(), report_id) if report_id <= MAX_ID else None
    if stored is None:
        return refuse(404, f"no report {report_id}: GET /reports lists them")
    body = _body(stored, fmt)
    response = Response(body, content_type=_FORMATS[fmt])
    response.headers["X-Content-SHA256"] = stored.sha256
    if fmt == "csv":
        response.headers["Content-Disposition"] = (
            f'attachment; filename="telemetry-report-{stored.id}-{stored.period_from}.csv"')
    return response


def _body(stored: StoredReport, fmt: str) -> str:
    if fmt == "json":
        return stored.content or ""
    if fmt == "csv":
        return to_csv(stored.report, stored.sha256)
    return to_html(stored.report, stored.sha256)
