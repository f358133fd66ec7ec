"""The ``trace_reports`` table (migration 0004): stored reports and their SHA-256.

A report is stored as :func:`governance.reports.canonical_json` text with the SHA-256 of those
exact UTF-8 bytes. :meth:`StoredReport.verified` recomputes it, so anyone holding the row (or a
downloaded copy of the content) can show it was not changed after it was generated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.reports import canonical_json, content_hash

REPORTS_TABLE = "trace_reports"
reports = sa.table(
    REPORTS_TABLE, sa.column("id", sa.Integer()), sa.column("period_from", sa.String()),
    sa.column("period_to", sa.String()), sa.column("generated_at", sa.DateTime()),
    sa.column("trigger", sa.String()), sa.column("status", sa.String()),
    sa.column("content", sa.Text()), sa.column("sha256", sa.String()),
)


@dataclass(frozen=True)
class StoredReport:
    """One stored report; ``content`` is the exact stored text."""

    id: int
    period_from: str
    period_to: str
    generated_at: datetime
    trigger: str
    status: str
    sha256: str
    content: str | None = None

    @property
    def report(self) -> dict[str, Any]:
        """The report parsed from its stored content."""
        if self.content is None:
            raise ValueError(f"report {self.id} was listed without its content")
        parsed: dict[str, Any] = json.loads(self.content)
        return parsed

    def verified(self) -> bool:
        """Whether the stored content still has the stored SHA-256."""
        return self.content is not None and content_hash(self.content) == self.sha256

    def summary(self) -> dict[str, Any]:
        """The listing fields, JSON-ready."""
        return {"id": self.id, "period_from": self.period_from, "period_to": self.period_to,
                "generated_at": self.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "trigger": self.trigger, "status": self.status, "sha256": self.sha256}


def save_report(engine: Engine, report: dict[str, Any]) -> StoredReport:
    """Store ``report`` (as built by ``build_report``) with its hash; returns the stored row."""
    content = canonical_json(report)
    period = report["report"]["period"]
    values = {
        "period_from": period["from"], "period_to": period["to"],
        "generated_at": datetime.strptime(report["report"]["generated_at"], "%Y-%m-%dT%H:%M:%SZ"),
        "trigger": report["report"]["trigger"],
        "status": report["status"], "content": content, "sha256": content_hash(content),
    }
    with engine.begin() as conn:
        row_id = int(conn.execute(reports.insert().values(**values)).lastrowid)
    return StoredReport(id=row_id, **values)


def list_reports(engine: Engine, limit: int = 100) -> list[StoredReport]:
    """The newest ``limit`` reports, newest first, without their content."""
    columns = [c for c in reports.c if c.name != "content"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*columns).order_by(reports.c.id.desc()).limit(limit)).mappings().all()
    return [StoredReport(**dict(row)) for row in rows]


def get_report(engine: Engine, report_id: int) -> StoredReport | None:
    """One report with its content, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(reports).where(reports.c.id == report_id)).mappings().first()
    return None if row is None else StoredReport(**dict(row))
