"""The leak scan's I/O edge: read stored rows in batches, scan them, and with ``fix`` rewrite.

The decisions are ``governance.scan``'s; here rows come from ``trace_service.reader`` (any
layout, PHP-written rows included) and, with ``fix=True``, each batch's leaking values are
rewritten masked in one transaction (metadata re-encoded as PHP's ``json_encode`` would) and the
run is recorded in the job ledger as ``leak_scan_fix``: which rows, columns, key paths and kinds
it changed, never the values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.masking import Masker
from governance.scan import Finding, RowFix, Scanner, ScanTally
from jobs.ledger import LedgerRow, RunRecord, details_json, record_run
from trace_service.layout import TABLE_NAME
from trace_service.php_json import encode_metadata
from trace_service.reader import StoredTrace, iter_traces

CHANGES_RECORDED = 1000  # the ledger row lists at most this many changes (all are counted)


@dataclass
class ScanResult:
    """What a scan saw and, with ``fix``, changed."""

    tally: ScanTally = field(default_factory=ScanTally)
    findings: list[Finding] = field(default_factory=list)
    findings_kept: int = 0
    rows_fixed: int = 0
    ledger_id: int | None = None


def run_scan(engine: Engine, masker: Masker, *, time_from: str | None = None,
             time_to: str | None = None, batch_size: int = 2000, keep: int | None = None,
             fix: bool = False) -> ScanResult:
    """Scan the rows of ``[time_from, time_to)`` (all rows by default) in id order.

    ``keep`` bounds how many findings are kept in the result (all are counted in the tally).
    """
    scanner = Scanner(masker)
    result = ScanResult()
    started = datetime.now(UTC).replace(tzinfo=None)
    fixes: list[RowFix] = []
    batch: list[StoredTrace] = []
    rows = iter_traces(engine, batch_size=batch_size, time_from=time_from, time_to=time_to)
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            _scan_batch(engine, scanner, batch, result, keep, fixes if fix else None)
            batch = []
    _scan_batch(engine, scanner, batch, result, keep, fixes if fix else None)
    if fix:
        result.ledger_id = _record(engine, started, fixes, result, masker.policy.sha256).id
    return result


def _scan_batch(engine: Engine, scanner: Scanner, batch: list[StoredTrace], result: ScanResult,
                keep: int | None, fixes: list[RowFix] | None) -> None:
    """Scan one batch; with ``fixes`` (a list to extend), rewrite its leaks in one transaction."""
    batch_fixes = []
    for row in batch:
        found = scanner.scan_counted(row, result.tally)
        if found and (keep is None or len(result.findings) < keep):
            result.findings.extend(found[: None if keep is None else keep - len(result.findings)])
        if found and fixes is not None:
            fix = scanner.fix(row, found)
            if fix is not None:
                batch_fixes.append(fix)
    if fixes is not None and batch_fixes:
        _apply(engine, batch_fixes)
        result.rows_fixed += len(batch_fixes)
        fixes.extend(batch_fixes)


def _apply(engine: Engine, fixes: list[RowFix]) -> None:
    """Rewrite one batch's leaking values in one transaction."""
    with engine.begin() as conn:
        for fix in fixes:
            values = {column: encode_metadata(value) if column == "metadata" else value
                      for column, value in fix.values.items()}
            assignments = ", ".join(f"{column} = :{column}" for column in sorted(values))
            conn.execute(sa.text(f"UPDATE {TABLE_NAME} SET {assignments} WHERE id = :row_id"),
                         {**values, "row_id": fix.row_id})


def _record(engine: Engine, started: datetime, fixes: list[RowFix], result: ScanResult,
            policy_sha256: str) -> LedgerRow:
    changes = [{"id": f.row_id, "column": finding.column, "path": finding.path, "kind": finding.kind}
               for f in fixes for finding in f.findings]
    ids = [f.row_id for f in fixes]
    return record_run(engine, RunRecord(
        job="leak_scan_fix", status="ok", started_at=started,
        finished_at=datetime.now(UTC).replace(tzinfo=None),
        first_id=min(ids, default=None), last_id=max(ids, default=None),
        details=details_json({
            "rows_scanned": result.tally.rows, "rows_fixed": len(fixes), "changes_total": len(changes),
            "changes": changes[:CHANGES_RECORDED], "by_kind": dict(result.tally.by_kind),
            "masking_policy_sha256": policy_sha256,
        }),
    ))
