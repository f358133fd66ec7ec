"""The HTML report page in a real headless Chromium: every figure shown matches the JSON report.

The app is served by a real HTTP server on 127.0.0.1 over a seeded MariaDB table; Chromium
(Debian's ``chromium`` + ``chromium-driver``, driven by Selenium) sends the ``reports:read`` key
as a header (DevTools ``Network.setExtraHTTPHeaders``), as a reverse proxy with a login would.
Each element with ``data-figure="<path>"`` is compared with the JSON value at that path.
A screenshot goes to ``docs/report-page.png`` when ``TRACE_SAVE_SCREENSHOT=1`` (the README's).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from werkzeug.serving import make_server

from governance.sampling import SamplingPolicy, SamplingRule
from jobs.compliance import ReportInputs, generate
from jobs.ledger import RunRecord, record_run
from jobs.opt_out_admin import add_opt_out
from jobs.report_policy import ReportsPolicy
from jobs.retention_policy import RetentionPolicy
from jobs.subject_export import export_subject
from jobs.subject_rows import Subject
from tests.support.compliance_seed import ALICE, KEYRING, NOW, PERIOD, Seeded, seed
from tests.support.php_schema import create_php_table
from trace_service import migrate
from trace_service.config import DatabaseURL
from trace_service.http.app import create_app
from trace_service.http.config import TestingConfig
from trace_service.http.counters import snapshots

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SAMPLING = SamplingPolicy((SamplingRule("http.request.*", 0.1),), source="sampling.toml")
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def served(mariadb_url: str) -> Iterator[tuple[str, str, int, Seeded]]:
    """The app on a real socket over a seeded layout-B table, one stored report:
    (base, key, id, what was seeded)."""
    from governance.masking import Masker
    from governance.masking_policy import load_masking_policy

    app = create_app(TestingConfig(database_url=DatabaseURL(mariadb_url), table_timezone="Africa/Cairo"))
    engine = app.extensions["trace_engine"]
    create_php_table(engine, "B")
    migrate.upgrade(engine)
    seeds = seed(engine, mariadb_url, "Africa/Cairo")
    for day, status in ((16, "ok"), (17, "ok"), (18, "failed")):
        at = NOW.replace(day=day, hour=1, minute=15)
        record_run(engine, RunRecord(job="retention", status=status, started_at=at, finished_at=at,
                                     rows_deleted=120 if status == "ok" else 0,
                                     error=None if status == "ok" else "OperationalError: lock wait"))
    with freeze_time(NOW.replace(day=19, hour=10)):  # a subject access export within the period
        export_subject(engine, Subject(email=ALICE), KEYRING, fmt="csv")
        add_opt_out(engine, Subject(actor_id=4), KEYRING)  # and an opt-out
    # What a service process persisted: traces sampled out and kept out for the opt-out.
    with engine.begin() as conn:
        conn.execute(snapshots.insert(), [
            {"instance": "web-1", "name": name, "value": value, "taken_at": NOW.replace(day=day)}
            for day, name, value in ((15, "writer.sampled_out.http.request.get", 100),
                                     (20, "writer.sampled_out.http.request.get", 1900),
                                     (20, "writer.discarded.sampled_out", 1900),
                                     (21, "writer.discarded.opted_out", 3))])
    inputs = ReportInputs(zone="Africa/Cairo", retention=RetentionPolicy(), reports=ReportsPolicy(),
                          masker=Masker(load_masking_policy(), KEYRING), sampling=SAMPLING)
    stored = generate(engine, PERIOD, inputs, NOW.replace(tzinfo=UTC), trigger="scheduled")
    _, key = app.extensions["trace_keys"].create("compliance", ["reports:read"])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", key, stored.id, seeds
    finally:
        server.shutdown()
        thread.join(5)
        app.extensions["trace_writer"].close(2)
        engine.dispose()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: apt-get install -y chromium chromium-driver "
                    "(.ci/run does this)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1100,2600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _at(document: Any, path: list[Any]) -> Any:
    """The JSON value at a data-figure path (a last part ``length`` is a list's length)."""
    value = document
    for part in path:
        if part == "length":
            return len(value)
        value = value[part]
    return value


def test_figures_on_the_page_match_the_json_report(served: tuple[str, str, int, Seeded],
                                                   browser: webdriver.Chrome, tmp_path: Path) -> None:
    base, key, report_id, seeds = served
    request = urllib.request.Request(f"{base}/reports/{report_id}.json",
                                     headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        sha256 = response.headers["X-Content-SHA256"]
        document = json.loads(response.read())
    document["sha256"] = sha256

    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {key}",
                                                                        "Accept": "text/html"}})
    browser.get(f"{base}/reports/{report_id}")
    assert "Telemetry compliance report" in browser.title

    figures = browser.find_elements(By.CSS_SELECTOR, "[data-figure]")
    shown = {".".join(map(str, json.loads(element.get_attribute("data-figure") or "[]"))): element.text
             for element in figures}
    assert len(figures) >= 30, shown
    for element in figures:
        path = json.loads(element.get_attribute("data-figure") or "[]")
        expected = _at(document, path)
        if expected is None:  # no rows at all ("none"), or a fact not gathered ("not checked")
            assert element.text in ("none", "not checked"), path
        else:
            assert element.text == str(expected), path
    # The figures that matter most are among them, and say what was seeded.
    for name in ("volume.total", "leak_scan.findings", "retention.runs", "retention.failures.length",
                 "retention.rows_older_than_window_and_grace", "status", "sha256",
                 "volume.by_event_key.auth.logout"):
        assert name in shown
    assert shown["volume.total"] == str(seeds.rows_in_period)
    assert shown["leak_scan.findings"] == str(len(seeds.planted))
    assert shown["status"] == "fail" and shown["retention.failures.length"] == "1"
    # The sampling rates in force next to what they kept out, and the opt-outs.
    assert shown["controls.sampling.policy.rules.0.match"] == "http.request.*"
    assert shown["controls.sampling.policy.rules.0.rate"] == "0.1"
    assert shown["controls.sampling.sampled_out_by_event_key.http.request.get"] == "1800"
    assert shown["controls.discarded_by_reason.opted_out"] == "3"
    assert shown["controls.opt_outs.in_force.actors"] == "1"
    assert shown["controls.opt_outs.changes.length"] == "1"
    assert shown["exports.length"] == "1"
    assert shown["exports.0.rows_exported"] == str(len(seeds.alice_ids))
    assert shown["exports.0.subject"].startswith("email_hash ") and "alice" not in browser.page_source.lower()

    save = os.environ.get("TRACE_SAVE_SCREENSHOT") == "1"
    target = DOCS / "report-page.png" if save else tmp_path / "page.png"
    target.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(target))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
