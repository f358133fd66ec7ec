"""GET /reports: stored reports behind a reports:read key, as JSON, CSV and HTML."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime

import pytest

from governance.report_store import save_report
from governance.reports import Period, ReportFacts, build_report
from tests.trace_service.http.test_ingest import Ingest


def _report(trigger: str = "manual") -> dict[str, object]:
    return build_report(ReportFacts(
        period=Period(date(2026, 11, 16), date(2026, 11, 22)), timezone="Africa/Cairo", layout="B",
        generated_at=datetime(2026, 11, 23, 6, tzinfo=UTC), trigger=trigger, retention=None,
        volume_by_day={"2026-11-17": 4}, volume_by_event_key={"auth.logout": 3, "zoë": 1},
        volume_by_severity={"info": 4}, scan=None, findings=[],
        masking_policy={"sha256": "ab" * 32, "source": "masking.toml"}, grants=None, counters=None,
        erasures=[]))


def _get(ingest: Ingest, path: str, key: str | None = None, accept: str = "*/*") -> object:
    headers = {"Accept": accept}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return ingest.client.get(path, headers=headers)


@pytest.mark.parametrize("path", ["/reports", "/reports/1", "/reports/1.csv"])
def test_reports_need_a_key_with_reports_read(ingest: Ingest, path: str) -> None:
    save_report(ingest.app.extensions["trace_engine"], _report())
    assert _get(ingest, path).status_code == 401  # type: ignore[attr-defined]
    refused = _get(ingest, path, ingest.key)  # an ingest-only key
    assert refused.status_code == 403  # type: ignore[attr-defined]
    assert "reports:read" in refused.json["error"]  # type: ignore[attr-defined]


def test_json_is_the_stored_content_and_matches_its_hash(ingest: Ingest) -> None:
    stored = save_report(ingest.app.extensions["trace_engine"], _report())
    response = _get(ingest, f"/reports/{stored.id}", ingest.reports_key)
    assert response.status_code == 200  # type: ignore[attr-defined]
    body = response.get_data()  # type: ignore[attr-defined]
    assert hashlib.sha256(body).hexdigest() == stored.sha256 == response.headers["X-Content-SHA256"]  # type: ignore[attr-defined]
    assert json.loads(body)["volume"]["by_event_key"] == {"auth.logout": 3, "zoë": 1}


def test_listing_newest_first_in_json_and_html(ingest: Ingest) -> None:
    engine = ingest.app.extensions["trace_engine"]
    first, second = save_report(engine, _report()), save_report(engine, _report("scheduled"))
    listing = _get(ingest, "/reports", ingest.reports_key).json  # type: ignore[attr-defined]
    assert [r["id"] for r in listing["reports"]] == [second.id, first.id]
    assert listing["reports"][0]["sha256"] == second.sha256
    page = _get(ingest, "/reports", ingest.reports_key, accept="text/html,*/*;q=0.8")
    assert page.mimetype == "text/html"  # type: ignore[attr-defined]
    assert f'href="/reports/{second.id}.html"' in page.get_data(as_text=True)  # type: ignore[attr-defined]


def test_browsers_get_html_and_any_form_can_be_named(ingest: Ingest) -> None:
    stored = save_report(ingest.app.extensions["trace_engine"], _report())
    html = _get(ingest, f"/reports/{stored.id}", ingest.reports_key, accept="text/html")
    assert html.mimetype == "text/html" and stored.sha256 in html.get_data(as_text=True)  # type: ignore[attr-defined]
    csv = _get(ingest, f"/reports/{stored.id}.csv", ingest.reports_key)
    assert csv.mimetype == "text/csv"  # type: ignore[attr-defined]
    assert "volume,total,4" in csv.get_data(as_text=True)  # type: ignore[attr-defined]
    assert "attachment" in csv.headers["Content-Disposition"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/reports/999", 404, "no report 999"),
    ("/reports/1.pdf", 404, "use .json, .csv or .html"),
    ("/reports?limit=0", 400, "limit='0'"),
    ("/reports?limit=abc", 400, "from 1 to 1000"),
])
def test_bad_requests_get_a_clear_answer(ingest: Ingest, path: str, status: int, words: str) -> None:
    save_report(ingest.app.extensions["trace_engine"], _report())
    response = _get(ingest, path, ingest.reports_key)
    assert response.status_code == status  # type: ignore[attr-defined]
    assert words in response.json["error"]  # type: ignore[attr-defined]
