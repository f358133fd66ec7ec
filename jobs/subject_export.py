"""Subject access export: every stored row of one person, as stored, as JSON or CSV.

The rows are found exactly as erasure finds them (:func:`jobs.subject_rows.find_rows`: by admin
id, or by the email's keyed hash under every key of ``CRYPTO_KEYS``, each candidate confirmed
by parsing), then read in full through the layout mapping (:func:`trace_service.reader.traces_by_id`),
so rows written by PHP and by us, in layout A, B or B0, come out in one shape. Values are given
as stored: what the masker masked stays masked, and nothing is unmasked or re-derived.

* ``json``: one object: ``subject`` (described as the ledger describes it, never the email),
  ``generated_at`` (UTC), ``count`` and ``rows``; each row has the table's columns, the time
  as the table's wall-clock text, and ``metadata`` parsed, or ``metadata_text`` when the stored
  text is not JSON.
* ``csv``: a header line, then one line per row with ``metadata`` as its stored text. A cell a
  spreadsheet would run as a formula gets a leading ``'`` (as in the report CSV).

Each export is recorded in the job ledger as ``export`` (status ``ok``, ``rows_deleted`` 0,
the first and last id, and details with the subject description, the count and the format), so
the next compliance report lists it beside the erasures.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from governance.hashing import Keyring
from governance.report_render import spreadsheet_safe
from jobs.ledger import LedgerRow, RunRecord, details_json, record_run
from jobs.subject_rows import Subject, describe, find_rows
from trace_service.reader import StoredTrace, traces_by_id

FORMATS = ("json", "csv")
# The columns of every layout, in the order the export gives them (metadata comes last).
COLUMNS = ("id", "occurred_at", "event_key", "severity", "actor_admin_id", "actor_type",
           "ip_address", "user_agent", "route_name", "request_id")


@dataclass
class ExportResult:
    """What an export found, its rendered body and its ledger row.

    ``body`` holds the person's data: it is kept out of the repr."""

    subject: str
    fmt: str
    count: int = 0
    first_id: int | None = None
    last_id: int | None = None
    body: str = field(default="", repr=False)
    ledger: LedgerRow | None = None


def trace_object(trace: StoredTrace) -> dict[str, Any]:
    """One stored row as the JSON export gives it: metadata parsed, or its text if not JSON."""
    out: dict[str, Any] = {name: getattr(trace, name) for name in COLUMNS}
    if trace.metadata_text is None:
        out["metadata"] = None
    else:
        try:
            out["metadata"] = json.loads(trace.metadata_text)
        except ValueError:
            # A row PHP wrote with broken JSON is still the person's row: give it as stored.
            out["metadata_text"] = trace.metadata_text
    return out


def render_json(subject: str, generated_at: datetime, traces: Iterable[StoredTrace]) -> str:
    """The JSON export (``generated_at`` aware), ending with a newline."""
    rows = [trace_object(trace) for trace in traces]
    document = {"subject": subject,
                "generated_at": generated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "count": len(rows), "rows": rows}
    # Non-ASCII kept as UTF-8: the export is read by people, and the file is UTF-8.
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def render_csv(traces: Iterable[StoredTrace]) -> str:
    """The CSV export: a header line, then one line per row (metadata as its stored text)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*COLUMNS, "metadata"])
    for trace in traces:
        writer.writerow([spreadsheet_safe(getattr(trace, name)) for name in COLUMNS]
                        + [spreadsheet_safe(trace.metadata_text)])
    return out.getvalue()


def export_subject(engine: Engine, subject: Subject, keyring: Keyring | None, *, fmt: str,
                   batch_size: int = 500) -> ExportResult:
    """Find the subject's rows as erasure does, read them in full, render them in ``fmt``
    (``json`` or ``csv``) and record the export in the job ledger.

    Raises ``ConfigError`` for an email subject without a keyring (nothing is recorded then)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    started = datetime.now(UTC)
    description = describe(subject, keyring)
    ids = find_rows(engine, subject, keyring)
    # Rows erased between the find and the read are skipped by the read, so count what was read.
    traces = list(traces_by_id(engine, ids, batch_size=batch_size))
    body = render_json(description, started, traces) if fmt == "json" else render_csv(traces)
    result = ExportResult(description, fmt, count=len(traces), body=body,
                          first_id=traces[0].id if traces else None,
                          last_id=traces[-1].id if traces else None)
    result.ledger = record_run(engine, RunRecord(
        job="export", status="ok", dry_run=False, started_at=started.replace(tzinfo=None),
        finished_at=datetime.now(UTC).replace(tzinfo=None), rows_deleted=0,
        first_id=result.first_id, last_id=result.last_id,
        details=details_json({"subject": description, "by": subject.by, "count": result.count,
                              "format": fmt}),
    ))
    return result
