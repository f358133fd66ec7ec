"""Compliance reports: gathered facts in, a report out (pure: no engine, no clock, no Flask).

The edge (``jobs.compliance``) reads the table, the job ledger, the persisted counters and the
leak scan into a :class:`ReportFacts`; :func:`build_report` turns it into a plain dict whose
sections are, in order: ``report`` (period, zone, layout, when), ``status`` and ``checks``,
``retention``, ``volume``, ``leak_scan``, ``masking_policy``, ``audit_guard``, ``loss``,
``controls`` (sampling rates in force, what was sampled out or switched off, opt-outs),
``erasures``, ``exports`` (subject access exports) and ``not_checked``.

Every check is ``pass``, ``fail``, ``warn`` or ``not_checked``; the report's ``status`` is
``fail`` if any check failed, else ``incomplete`` if any was not checked, else ``pass``. A fact
the edge could not gather is ``None`` here and becomes a ``not_checked`` line that says why: a
report never claims what it did not verify. :func:`canonical_json` is the stored form, and the
SHA-256 of its UTF-8 bytes is the report's hash.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

REPORT_VERSION = 1
FAILED_RUN_STATUSES = frozenset({"failed", "missed"})
FINDINGS_LISTED = 100


@dataclass(frozen=True)
class Period:
    """Whole days, both ends included, on the table's wall clock."""

    first_day: date
    last_day: date

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise ValueError(f"the period ends ({self.last_day}) before it starts ({self.first_day})")

    @property
    def start(self) -> datetime:
        """The first instant of the period (naive wall-clock)."""
        return datetime.combine(self.first_day, datetime.min.time())

    @property
    def end(self) -> datetime:
        """The first instant after the period (naive wall-clock, exclusive)."""
        return datetime.combine(self.last_day + timedelta(days=1), datetime.min.time())

    @property
    def days(self) -> list[str]:
        """Every day of the period as ``YYYY-MM-DD``."""
        count = (self.last_day - self.first_day).days + 1
        return [(self.first_day + timedelta(days=n)).isoformat() for n in range(count)]


@dataclass(frozen=True)
class CounterSample:
    """One persisted counter value: cumulative within one process lifetime (``instance``)."""

    instance: str
    name: str
    value: int
    taken_at: datetime  # naive UTC


@dataclass(frozen=True)
class RetentionFacts:
    """What the table and the job ledger say about retention."""

    window_days: int
    cutoff: str
    grace_hours: int
    grace_cutoff: str
    oldest_row: str | None
    rows_older_than_window: int
    rows_older_than_grace: int
    runs: Sequence[Mapping[str, Any]]
    expected_runs: int | None
    chain: Mapping[str, Any]


@dataclass(frozen=True)
class ReportFacts:
    """Everything a report states, as gathered by the edge; ``None`` means not gathered."""

    period: Period
    timezone: str
    layout: str
    generated_at: datetime  # aware UTC
    trigger: str
    retention: RetentionFacts | None
    volume_by_day: Mapping[str, int]
    volume_by_event_key: Mapping[str, int]
    volume_by_severity: Mapping[str, int]
    scan: Mapping[str, Any] | None
    findings: Sequence[Mapping[str, Any]]
    masking_policy: Mapping[str, str]
    grants: Mapping[str, Any] | None
    counters: Sequence[CounterSample] | None
    erasures: Sequence[Mapping[str, Any]]
    # Subject access exports of the period (ledger job ``export``); none unless gathered.
    exports: Sequence[Mapping[str, Any]] = ()
    # The sampling policy in force (SamplingPolicy.as_report()), the opt-outs in force now
    # ({"actors": n, "email_hashes": n}) and the period's opt-out changes (ledger ``opt_out``).
    sampling: Mapping[str, Any] | None = None
    opt_outs: Mapping[str, int] | None = None
    opt_out_changes: Sequence[Mapping[str, Any]] = ()
    not_gathered: Mapping[str, str] = field(default_factory=dict)


def counter_deltas(samples: Iterable[CounterSample], start: datetime, end: datetime) -> dict[str, int]:
    """How much each counter grew within ``[start, end)`` (UTC), summed over processes.

    Values are cumulative per process lifetime, so a process's growth is its last value before
    ``end`` minus its last value before ``start``; a restart is a new instance starting at 0.
    """
    before: dict[tuple[str, str], int] = defaultdict(int)
    upto: dict[tuple[str, str], int] = defaultdict(int)
    for sample in samples:
        key = (sample.instance, sample.name)
        if sample.taken_at < start:
            before[key] = max(before[key], sample.value)
        if sample.taken_at < end:
            upto[key] = max(upto[key], sample.value)
    totals: dict[str, int] = defaultdict(int)
    for key, value in upto.items():
        totals[key[1]] += max(0, value - before[key])
    return dict(sorted(totals.items()))


def _check(name: str, result: str, detail: str) -> dict[str, str]:
    return {"name": name, "result": result, "detail": detail}


def _retention(facts: RetentionFacts | None, checks: list[dict[str, str]]) -> dict[str, Any] | None:
    if facts is None:
        return None
    runs = list(facts.runs)
    real = [run for run in runs if not run.get("dry_run")]
    failures = [run for run in real if run["status"] in FAILED_RUN_STATUSES]
    by_status: dict[str, int] = defaultdict(int)
    for run in real:
        by_status[run["status"]] += 1
    checks.append(_check(
        "retention.rows_beyond_window", "pass" if facts.rows_older_than_grace == 0 else "fail",
        f"{facts.rows_older_than_grace} row(s) older than the {facts.window_days}-day window plus "
        f"{facts.grace_hours} h between scheduled runs (cut-off {facts.grace_cutoff}); "
        f"{facts.rows_older_than_window} row(s) older than the window itself (cut-off {facts.cutoff})"))
    checks.append(_check(
        "retention.runs_succeeded", "pass" if not failures else "fail",
        f"{len(failures)} failed or missed run(s) of {len(real)} in the period"))
    if facts.expected_runs is None:
        checks.append(_check("retention.runs_on_schedule", "not_checked",
                             "the schedule's expected runs were not computed"))
    else:
        retention_runs = sum(1 for run in real if run["job"] in ("retention", "prune", "partitions"))
        checks.append(_check(
            "retention.runs_on_schedule",
            "pass" if retention_runs >= facts.expected_runs else "fail",
            f"{retention_runs} retention run(s) recorded, {facts.expected_runs} expected by the schedule"))
    checks.append(_check(
        "retention.ledger_chain", "pass" if facts.chain.get("ok") else "fail",
        f"{facts.chain.get('rows', 0)} ledger row(s) verified"
        + ("" if facts.chain.get("ok") else
           f"; broken at row {facts.chain.get('broken_at')}: {facts.chain.get('reason')}")))
    return {
        "window_days": facts.window_days, "cutoff": facts.cutoff, "grace_hours": facts.grace_hours,
        "oldest_row": facts.oldest_row, "rows_older_than_window": facts.rows_older_than_window,
        "rows_older_than_window_and_grace": facts.rows_older_than_grace,
        "runs": len(real), "dry_runs": len(runs) - len(real),
        "runs_by_status": dict(sorted(by_status.items())),
        "rows_deleted": sum(int(run.get("rows_deleted") or 0) for run in real),
        "partitions_dropped": sum(len([p for p in (run.get("partitions_dropped") or "").split(",") if p])
                                  for run in real),
        "expected_runs": facts.expected_runs, "ledger_chain": dict(facts.chain),
        "failures": [{k: run.get(k) for k in ("id", "job", "status", "started_at", "error")}
                     for run in failures],
        "run_list": [dict(run) for run in runs],
    }


def _volume(facts: ReportFacts) -> dict[str, Any]:
    by_day = {day: int(facts.volume_by_day.get(day, 0)) for day in facts.period.days}
    return {
        "total": sum(by_day.values()),
        "by_day": by_day,
        "by_event_key": dict(sorted(facts.volume_by_event_key.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by_severity": dict(sorted(facts.volume_by_severity.items())),
    }


def _leak_scan(facts: ReportFacts, checks: list[dict[str, str]]) -> dict[str, Any] | None:
    if facts.scan is None:
        return None
    total = int(facts.scan.get("findings", 0))
    checks.append(_check(
        "leak_scan.no_secrets", "pass" if total == 0 else "fail",
        f"{total} finding(s) in {facts.scan.get('rows_with_findings', 0)} of "
        f"{facts.scan.get('rows_scanned', 0)} row(s) of the period"))
    listed = [dict(f) for f in facts.findings[:FINDINGS_LISTED]]
    return {**facts.scan, "findings_listed": listed, "findings_not_listed": max(0, total - len(listed))}


def _guard(facts: ReportFacts, deltas: dict[str, int] | None,
           checks: list[dict[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"blocked_writes": None, "blocked_total": None, "grants": None}
    if deltas is not None:
        blocked = {name.removeprefix("guard.blocked."): count
                   for name, count in deltas.items() if name.startswith("guard.blocked.")}
        out["blocked_writes"] = blocked
        total = out["blocked_total"] = sum(blocked.values())
        checks.append(_check(
            "audit_guard.blocked_writes", "pass" if total == 0 else "warn",
            f"{total} write(s) to a protected table refused by the guard in the period"
            + (" (each refused before reaching the database; find the caller in the logs)" if total else "")))
    grants = facts.grants
    if grants is not None and grants.get("applicable") and not grants.get("error"):
        out["grants"] = dict(grants)
        violations = grants.get("violations") or []
        checks.append(_check(
            "audit_guard.grants", "pass" if not violations else "fail",
            f"database user {grants.get('user')}: "
            + ("no privilege that writes audit_logs" if not violations
               else f"{len(violations)} privilege(s) that could write audit_logs")))
    else:
        reason = "not run" if grants is None else (grants.get("error") or "not applicable")
        checks.append(_check("audit_guard.grants", "not_checked", f"grants check: {reason}"))
    return out


def _prefixed(deltas: dict[str, int], prefix: str) -> dict[str, int]:
    """The counters named ``<prefix><reason>``, by reason."""
    return {name.removeprefix(prefix): count for name, count in deltas.items() if name.startswith(prefix)}


def _losses_check(check: str, by_reason: dict[str, int], what: str) -> dict[str, str]:
    """``pass`` when nothing was lost, else ``warn`` with the count and its reasons."""
    total = sum(by_reason.values())
    reasons = f" ({', '.join(f'{k}: {v}' for k, v in by_reason.items() if v)})" if total else ""
    return _check(check, "pass" if total == 0 else "warn", f"{total} trace(s) {what} in the period{reasons}")


def _loss(deltas: dict[str, int] | None, checks: list[dict[str, str]]) -> dict[str, Any] | None:
    if deltas is None:
        checks.append(_check("loss.writer_drops", "not_checked", "no counters were read"))
        return None
    writer_drops = _prefixed(deltas, "writer.dropped.")
    checks.append(_losses_check("loss.writer_drops", writer_drops, "dropped by writers"))
    loss: dict[str, Any] = {
        "writer": {"submitted": deltas.get("writer.submitted", 0), "written": deltas.get("writer.written", 0),
                   "dropped": sum(writer_drops.values()), "dropped_by_reason": writer_drops},
        "ingest": {"received": deltas.get("ingest.received", 0), "accepted": deltas.get("ingest.accepted", 0),
                   "refused_by_reason": _prefixed(deltas, "ingest.rejected.")},
    }
    if any(name.startswith("queue.") for name in deltas):
        # The durable path's consumers: traces they parked in the dead-letter stream were
        # accepted (202) and are not in the table: a loss to look at, though not a lost trace.
        dead = _prefixed(deltas, "queue.dead.")
        checks.append(_losses_check("loss.queue_dead_letters", dead,
                                    "moved to the queue's dead-letter stream"))
        loss["queue"] = {"written": deltas.get("queue.written", 0),
                         "duplicates": deltas.get("queue.duplicates", 0),
                         "dead_letters": sum(dead.values()), "dead_letters_by_reason": dead}
    return loss


def _controls(facts: ReportFacts, deltas: dict[str, int] | None) -> dict[str, Any]:
    """What was kept out on purpose, and by which rules: so that nobody reads sampled volume as
    real volume. Counts are ``None`` when no counters were read (said in ``not_checked``)."""
    discarded: dict[str, int] | None = None
    sampled: dict[str, int] | None = None
    if deltas is not None:
        discarded = defaultdict(int)
        for prefix in ("writer.discarded.", "queue.discarded."):
            for reason, count in _prefixed(deltas, prefix).items():
                discarded[reason] += count
        discarded = dict(sorted(discarded.items()))
        sampled = _prefixed(deltas, "writer.sampled_out.")
    return {
        "sampling": {
            "policy": None if facts.sampling is None else dict(facts.sampling),
            "sampled_out_by_event_key": sampled,
            "note": "volume counts stored rows: where a rule's rate is below 1, the event key's "
                    "real volume was larger by the sampled-out count. The policy shown is the "
                    "one the report was made with (TRACE_SAMPLING_POLICY of that process): "
                    "writers configured with another file sampled by theirs",
        },
        "discarded_by_reason": discarded,
        "opt_outs": {
            "in_force": None if facts.opt_outs is None else dict(facts.opt_outs),
            "traces_kept_out": None if discarded is None else discarded.get("opted_out", 0),
            "changes": [dict(change) for change in facts.opt_out_changes],
        },
    }


def build_report(facts: ReportFacts) -> dict[str, Any]:
    """The report for ``facts`` (a plain dict, in the section order of the module docstring)."""
    checks: list[dict[str, str]] = []
    not_checked = [f"{what}: {why}" for what, why in facts.not_gathered.items()]
    start_utc, end_utc = _utc_bounds(facts)
    deltas = None if facts.counters is None else counter_deltas(facts.counters, start_utc, end_utc)
    retention = _retention(facts.retention, checks)
    if retention is None:
        checks.append(_check("retention.rows_beyond_window", "not_checked",
                             facts.not_gathered.get("retention", "retention facts were not gathered")))
    leak_scan = _leak_scan(facts, checks)
    if leak_scan is None:
        checks.append(_check("leak_scan.no_secrets", "not_checked",
                             facts.not_gathered.get("leak_scan", "the leak scan did not run")))
    guard = _guard(facts, deltas, checks)
    loss = _loss(deltas, checks)
    not_checked += [f"{c['name']}: {c['detail']}" for c in checks
                    if c["result"] == "not_checked" and c["name"] not in facts.not_gathered]
    results = {c["result"] for c in checks}
    status = "fail" if "fail" in results else "incomplete" if "not_checked" in results else "pass"
    return {
        "report": {
            "version": REPORT_VERSION, "table": "telemetry_traces", "layout": facts.layout,
            "period": {"from": facts.period.first_day.isoformat(), "to": facts.period.last_day.isoformat(),
                       "timezone": facts.timezone, "ends_inclusive": True},
            "generated_at": facts.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "trigger": facts.trigger,
        },
        "status": status,
        "checks": checks,
        "retention": retention,
        "volume": _volume(facts),
        "leak_scan": leak_scan,
        "masking_policy": dict(facts.masking_policy),
        "audit_guard": guard,
        "loss": loss,
        "controls": _controls(facts, deltas),
        "erasures": [dict(e) for e in facts.erasures],
        "exports": [dict(e) for e in facts.exports],
        "not_checked": not_checked,
    }


def wall_to_utc(wall: datetime, timezone: str) -> datetime:
    """A naive wall-clock time in ``timezone`` as naive UTC (the earlier reading of a repeated hour)."""
    return wall.replace(tzinfo=ZoneInfo(timezone)).astimezone(UTC).replace(tzinfo=None)


def _utc_bounds(facts: ReportFacts) -> tuple[datetime, datetime]:
    return (wall_to_utc(facts.period.start, facts.timezone),
            wall_to_utc(facts.period.end, facts.timezone))


def canonical_json(report: Mapping[str, Any]) -> str:
    """The stored form of a report: compact JSON, keys in section order, non-ASCII kept."""
    return json.dumps(report, ensure_ascii=False, separators=(",", ":"), default=str)


def content_hash(content: str) -> str:
    """SHA-256 hex of the stored content's UTF-8 bytes."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()
