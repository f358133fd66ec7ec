"""Erasure: delete one person's traces, found by admin id or by email, in batches.

The rows are found by :func:`jobs.subject_rows.find_rows`, the finder subject access export
uses too: by ``actor_admin_id`` (layout B: ``actor_id`` with ``actor_type = 'admin'``), or by
the email's PHP-compatible keyed hash under *any* key of ``CRYPTO_KEYS`` (as a value or inside
text), or the email in clear; every candidate is confirmed by parsing its metadata, so a hash
that merely shares characters never deletes a row. Deletes go by id, a batch per transaction.
The run is recorded in the job ledger as ``erase`` (``dry_run`` by default) with the subject
described without the email: ``email_hash 1a2b3c4d5e6f…``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.hashing import Keyring
from jobs.ledger import LedgerRow, RunRecord, details_json, record_run
from jobs.subject_rows import Subject, describe, find_rows
from trace_service.layout import TABLE_NAME

# Subject, find_rows and describe lived here before export shared them; importers still find them.
__all__ = ["ErasureResult", "Subject", "describe", "erase", "find_rows"]


@dataclass
class ErasureResult:
    """What an erasure found and deleted."""

    subject: str
    matched: int = 0
    deleted: int = 0
    first_id: int | None = None
    last_id: int | None = None
    dry_run: bool = True
    ledger: LedgerRow | None = None


def erase(engine: Engine, subject: Subject, keyring: Keyring | None, *, dry_run: bool = True,
          batch_size: int = 500) -> ErasureResult:
    """Find the subject's rows and (unless ``dry_run``) delete them in batches; record the run."""
    started = datetime.now(UTC).replace(tzinfo=None)
    ids = find_rows(engine, subject, keyring)
    result = ErasureResult(describe(subject, keyring), matched=len(ids), dry_run=dry_run,
                           first_id=ids[0] if ids else None, last_id=ids[-1] if ids else None)
    if not dry_run:
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            with engine.begin() as conn:
                deleted = conn.execute(sa.text(f"DELETE FROM {TABLE_NAME} WHERE id IN :ids")
                                       .bindparams(sa.bindparam("ids", expanding=True)),
                                       {"ids": chunk}).rowcount
            result.deleted += int(deleted)
    result.ledger = record_run(engine, RunRecord(
        job="erase", status="dry_run" if dry_run else "ok", dry_run=dry_run, started_at=started,
        finished_at=datetime.now(UTC).replace(tzinfo=None), rows_deleted=result.deleted,
        first_id=result.first_id, last_id=result.last_id,
        details=details_json({"subject": result.subject, "matched": result.matched,
                              "by": subject.by}),
    ))
    return result
