"""Managing opt-outs (``flask governance opt-out add|remove|list``): the write side of
``trace_opt_outs``; every writer and endpoint reads it (``trace_service.opt_outs``).

An email is never stored: it becomes its PHP-compatible keyed hash under **every** key of
``CRYPTO_KEYS``, one row each, so a trace PHP hashed with a key since retired is recognised as
well as ours. After a key rotation, run ``add`` again for the people already opted out by email
(it adds the new key's hash and keeps the rest). Each change goes to the job ledger as
``opt_out`` with the subject described as erasure describes it (``email_hash 1a2b3c…``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.hashing import Keyring, normalise_email
from jobs.ledger import RunRecord, details_json, record_run
from jobs.subject_rows import Subject, describe, keyed_email_hashes
from trace_service.opt_outs import ACTOR, EMAIL_HASH, TABLE

_table = sa.table(TABLE, sa.column("kind", sa.String()), sa.column("value", sa.String()),
                  sa.column("key_id", sa.String()), sa.column("created_at", sa.DateTime()))


@dataclass(frozen=True)
class OptOutEntry:
    """One row of ``trace_opt_outs`` as listed (a hash shown by its first 12 digits)."""

    kind: str
    value: str
    key_id: str | None
    created_at: datetime

    def shown(self) -> str:
        """The value as a listing shows it: an admin id whole, a hash cut (it is personal data)."""
        return self.value if self.kind == ACTOR else f"{self.value[:12]}…"


def _values(subject: Subject, keyring: Keyring | None) -> list[tuple[str, str, str | None]]:
    """``(kind, value, key_id)`` rows that stand for ``subject``."""
    if subject.actor_id is not None:
        return [(ACTOR, str(subject.actor_id), None)]
    email = normalise_email(subject.email or "")
    return [(EMAIL_HASH, hashed, key_id) for key_id, hashed in keyed_email_hashes(email, keyring)]


def add_opt_out(engine: Engine, subject: Subject, keyring: Keyring | None) -> int:
    """Opt ``subject`` out (idempotent); returns how many rows were new. Recorded in the ledger."""
    now = datetime.now(UTC).replace(tzinfo=None)
    values = _values(subject, keyring)
    with engine.begin() as conn:
        have = {v for (v,) in conn.execute(
            sa.select(_table.c.value).where(_table.c.value.in_([v for _, v, _ in values])))}
        new = [{"kind": kind, "value": value, "key_id": key_id, "created_at": now}
               for kind, value, key_id in values if value not in have]
        if new:
            conn.execute(_table.insert(), new)
    _record(engine, "add", subject, keyring, now, len(new))
    return len(new)


def remove_opt_out(engine: Engine, subject: Subject, keyring: Keyring | None) -> int:
    """Withdraw ``subject``'s opt-out; returns how many rows went. Recorded in the ledger."""
    now = datetime.now(UTC).replace(tzinfo=None)
    values = _values(subject, keyring)
    with engine.begin() as conn:
        removed = int(conn.execute(_table.delete().where(
            _table.c.value.in_([v for _, v, _ in values]))).rowcount)
    _record(engine, "remove", subject, keyring, now, removed)
    return removed


def list_opt_outs(engine: Engine) -> list[OptOutEntry]:
    """Every opt-out row, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(_table.c.kind, _table.c.value, _table.c.key_id,
                                      _table.c.created_at).order_by(_table.c.created_at)).all()
    return [OptOutEntry(str(kind), str(value), key_id, created) for kind, value, key_id, created in rows]


def _record(engine: Engine, action: str, subject: Subject, keyring: Keyring | None,
            started: datetime, rows: int) -> None:
    record_run(engine, RunRecord(
        job="opt_out", status="ok", dry_run=False, started_at=started,
        finished_at=datetime.now(UTC).replace(tzinfo=None), rows_deleted=0,
        details=details_json({"action": action, "subject": describe(subject, keyring), "rows": rows}),
    ))
