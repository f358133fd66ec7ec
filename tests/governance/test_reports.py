"""The pure report builder and its renderings."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.report_render import flatten, to_csv, to_html
from governance.reports import (
    CounterSample,
    Period,
    ReportFacts,
    RetentionFacts,
    build_report,
    canonical_json,
    content_hash,
    counter_deltas,
)
from governance.sampling import SamplingPolicy, SamplingRule

PERIOD = Period(date(2026, 11, 16), date(2026, 11, 22))
START, END = datetime(2026, 11, 16), datetime(2026, 11, 23)


def _retention(**changes: Any) -> RetentionFacts:
    values: dict[str, Any] = dict(
        window_days=30, cutoff="2026-10-25 12:00:00.000000", grace_hours=26,
        grace_cutoff="2026-10-24 10:00:00.000000", oldest_row="2026-10-26 01:00:00.000000",
        rows_older_than_window=0, rows_older_than_grace=0,
        runs=[{"id": n, "job": "retention", "status": "ok", "dry_run": False, "rows_deleted": 10,
               "partitions_dropped": "p20261001,p20261002" if n == 1 else None} for n in range(1, 8)],
        expected_runs=7, chain={"ok": True, "rows": 7, "broken_at": None, "reason": ""})
    values.update(changes)
    return RetentionFacts(**values)


def _facts(**changes: Any) -> ReportFacts:
    values: dict[str, Any] = dict(
        period=PERIOD, timezone="UTC", layout="A", generated_at=datetime(2026, 11, 23, 6, tzinfo=UTC),
        trigger="scheduled", retention=_retention(),
        volume_by_day={"2026-11-16": 5, "2026-11-18": 2}, volume_by_event_key={"a": 3, "b": 4},
        volume_by_severity={"info": 6, "error": 1},
        scan={"rows_scanned": 7, "findings": 0, "rows_with_findings": 0, "by_kind": {}},
        findings=[], masking_policy={"sha256": "ab" * 32, "source": "masking.toml"},
        grants={"user": "telemetry@%", "applicable": True, "ok": True, "error": None, "violations": []},
        counters=[CounterSample("h:1:x", "writer.written", 7, START + timedelta(hours=1))],
        erasures=[])
    values.update(changes)
    return ReportFacts(**values)


def _results(report: Mapping[str, Any]) -> dict[str, str]:
    return {c["name"]: c["result"] for c in report["checks"]}


def test_a_clean_period_passes_and_fills_every_day() -> None:
    report = build_report(_facts())
    assert report["status"] == "pass", report["checks"]
    assert report["volume"]["by_day"] == {"2026-11-16": 5, "2026-11-17": 0, "2026-11-18": 2, "2026-11-19": 0,
                                          "2026-11-20": 0, "2026-11-21": 0, "2026-11-22": 0}
    assert report["volume"]["total"] == 7
    assert list(report["volume"]["by_event_key"]) == ["b", "a"]  # most rows first
    assert report["retention"]["rows_deleted"] == 70 and report["retention"]["partitions_dropped"] == 2
    assert report["not_checked"] == []


@pytest.mark.parametrize(("changes", "check", "result"), [
    ({"retention": _retention(rows_older_than_grace=1, rows_older_than_window=5)},
     "retention.rows_beyond_window", "fail"),
    ({"retention": _retention(rows_older_than_window=5)}, "retention.rows_beyond_window", "pass"),
    ({"retention": _retention(expected_runs=8)}, "retention.runs_on_schedule", "fail"),
    ({"retention": _retention(chain={"ok": False, "rows": 3, "broken_at": 2, "reason": "edited"})},
     "retention.ledger_chain", "fail"),
    ({"retention": _retention(runs=[{"id": 1, "job": "prune", "status": "missed", "dry_run": False}],
                              expected_runs=1)}, "retention.runs_succeeded", "fail"),
    ({"scan": {"rows_scanned": 3, "findings": 2, "rows_with_findings": 1}}, "leak_scan.no_secrets", "fail"),
    ({"grants": {"user": "t@%", "applicable": True, "ok": False, "error": None,
                 "violations": ["app.audit_logs: INSERT"]}}, "audit_guard.grants", "fail"),
    ({"counters": [CounterSample("h:1:x", "guard.blocked.audit_logs", 2, START)]},
     "audit_guard.blocked_writes", "warn"),
    ({"counters": [CounterSample("h:1:x", "writer.dropped.queue_full", 4, START)]},
     "loss.writer_drops", "warn"),
    ({"counters": [CounterSample("h:2:y", "queue.dead.not a trace", 1, START)]},
     "loss.queue_dead_letters", "warn"),
    ({"counters": [CounterSample("h:2:y", "queue.written", 9, START)]}, "loss.queue_dead_letters", "pass"),
])
def test_each_check_reports_its_failure(changes: dict[str, Any], check: str, result: str) -> None:
    report = build_report(_facts(**changes))
    assert _results(report)[check] == result
    assert report["status"] == ("fail" if result == "fail" else "pass")


def test_facts_not_gathered_make_the_report_incomplete_and_say_why() -> None:
    report = build_report(_facts(retention=None, counters=None, scan=None,
                                 grants={"user": "", "applicable": False, "ok": True,
                                         "error": "grants need MySQL or MariaDB", "violations": []},
                                 not_gathered={"retention": "the job ledger could not be read"}))
    assert report["status"] == "incomplete"
    assert report["retention"] is None and report["loss"] is None and report["leak_scan"] is None
    text = " ".join(report["not_checked"])
    for expected in ("the job ledger could not be read", "no counters were read",
                     "the leak scan did not run", "grants need MySQL or MariaDB"):
        assert expected in text
    assert report["audit_guard"]["blocked_total"] is None


@st.composite
def _process_histories(draw: st.DrawFn) -> tuple[list[CounterSample], int]:
    """Processes that each count up; samples at random times; the true growth in [START, END)."""
    samples, truth = [], 0
    for proc in range(draw(st.integers(1, 4))):
        value = 0
        at = START - timedelta(days=draw(st.integers(0, 3)))
        for _ in range(draw(st.integers(1, 12))):
            at += timedelta(hours=draw(st.integers(1, 60)))
            step = draw(st.integers(0, 50))
            value += step
            if START <= at < END:
                truth += step
            samples.append(CounterSample(f"host:{proc}", "writer.dropped.db_error", value, at))
    return draw(st.permutations(samples)), truth


@settings(max_examples=300, deadline=None)
@given(_process_histories())
def test_counter_deltas_equal_the_growth_within_the_period(history: tuple[list[CounterSample], int]) -> None:
    samples, truth = history
    assert counter_deltas(samples, START, END).get("writer.dropped.db_error", 0) == truth


def test_hash_is_of_the_canonical_utf8_bytes() -> None:
    report = build_report(_facts(volume_by_event_key={"zoë.日本": 1}))
    content = canonical_json(report)
    assert "zoë.日本" in content  # kept as UTF-8, not escaped
    assert content_hash(content) == hashlib.sha256(content.encode("utf-8")).hexdigest()


def test_csv_has_one_line_per_figure_and_defuses_formulas() -> None:
    report = build_report(_facts(volume_by_event_key={"=HYPERLINK(1)": 1}))
    rows = list(csv.reader(io.StringIO(to_csv(report, "f" * 64))))
    assert rows[0] == ["section", "key", "value"] and rows[1] == ["report", "sha256", "f" * 64]
    assert ["volume", "total", "7"] in rows
    assert ["volume", "by_event_key.=HYPERLINK(1)", "1"] in rows
    assert len(rows) == 2 + len(list(flatten(report)))


def test_html_escapes_client_text_and_tags_figures() -> None:
    report = build_report(_facts(volume_by_event_key={"<script>alert(1)</script>": 1}))
    page = to_html(report, "f" * 64)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert """data-figure='["volume", "total"]'>7<""" in page
    assert """data-figure='["sha256"]'>""" + "f" * 64 in page


def test_a_period_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="ends"):
        Period(date(2026, 11, 22), date(2026, 11, 16))


def test_the_queues_dead_letters_are_losses_of_their_own() -> None:
    report = build_report(_facts(counters=[
        CounterSample("h:2:y", "queue.written", 40, START + timedelta(hours=1)),
        CounterSample("h:2:y", "queue.dead.db_error", 2, START + timedelta(hours=2))]))
    assert report["loss"]["queue"] == {"written": 40, "duplicates": 0, "dead_letters": 2,
                                       "dead_letters_by_reason": {"db_error": 2}}
    assert "2 trace(s) moved to the queue's dead-letter stream" in str(report["checks"])
    assert "queue" not in build_report(_facts())["loss"]  # no queue: the report is as before


def test_exports_are_listed_in_json_csv_and_html() -> None:
    export = {"id": 12, "started_at": "2026-11-18 10:00:00", "status": "ok", "rows_exported": 4,
              "format": "csv", "subject": "email_hash 1a2b3c4d5e6f…"}
    report = build_report(_facts(exports=[export]))
    assert report["exports"] == [export] and list(report)[-2:] == ["exports", "not_checked"]
    lines = list(csv.reader(io.StringIO(to_csv(report))))
    assert ["exports", "0.subject", "email_hash 1a2b3c4d5e6f…"] in lines
    page = to_html(report)
    assert """data-figure='["exports", "length"]'>1<""" in page
    assert """data-figure='["exports", 0, "rows_exported"]'>4<""" in page
    assert build_report(_facts())["exports"] == []
    # A report stored before exports were reported shows no exports section (not a false 0).
    old = {k: v for k, v in report.items() if k != "exports"}
    assert "Subject access exports" not in to_html(old) and "Subject access exports" in page


def test_sampled_out_and_opted_out_traces_are_stated_with_the_rates_not_as_losses() -> None:
    sampling = SamplingPolicy((SamplingRule("http.request.*", 0.1),), source="sampling.toml")
    hour = START + timedelta(hours=1)
    report = build_report(_facts(
        counters=[CounterSample("h:3:z", "writer.sampled_out.http.request.get", 90, hour),
                  CounterSample("h:3:z", "writer.discarded.sampled_out", 90, hour),
                  CounterSample("h:3:z", "writer.discarded.opted_out", 2, hour),
                  CounterSample("h:4:q", "queue.discarded.opted_out", 1, hour)],
        sampling=sampling.as_report(), opt_outs={"actors": 2, "email_hashes": 4},
        opt_out_changes=[{"id": 5, "started_at": "2026-11-17 08:00:00", "action": "add",
                          "subject": "actor_id 9"}]))
    controls = report["controls"]
    assert controls["sampling"]["policy"]["rules"] == [{"match": "http.request.*", "rate": 0.1}]
    assert controls["sampling"]["sampled_out_by_event_key"] == {"http.request.get": 90}
    assert controls["discarded_by_reason"] == {"opted_out": 3, "sampled_out": 90}
    assert controls["opt_outs"]["traces_kept_out"] == 3
    assert controls["opt_outs"]["in_force"] == {"actors": 2, "email_hashes": 4}
    assert _results(report)["loss.writer_drops"] == "pass"  # kept out on purpose: not a loss
    page = to_html(report)
    assert """data-figure='["controls", "discarded_by_reason", "sampled_out"]'>90<""" in page
    assert "actor_id 9" in page
    # No counters read: the counts are not claimed (None), the rates still are.
    unread = build_report(_facts(counters=None, sampling=sampling.as_report()))["controls"]
    assert unread["discarded_by_reason"] is None and unread["opt_outs"]["traces_kept_out"] is None
    assert "Sampling and opt-outs" in to_html(build_report(_facts(counters=None)))
